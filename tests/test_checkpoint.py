"""Safe atomic checkpoints: round trip, interrupted writes, config mismatch, no pickles."""
import inspect
import os

import pytest
import torch

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.train.gan import GanTrainer
from hqanogan_core.presets import GanTrainConfig, get_preset

TINY = dict(resolution=32, channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, swd_images=0,
            r1_interval=2, pl_interval=2, augment_p=0.3, ada_kimg=1.0)


def make_trainer(**kw):
    cfg = GanTrainConfig(**{**TINY, **kw})
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, cfg.channels, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    return GanTrainer(cfg, images, torch.device("cpu"))


def test_round_trip_restores_everything(tmp_path):
    tr = make_trainer()
    for _ in range(4):
        tr.step()
    path = tr.save(tmp_path / "latest.safetensors")
    assert (tmp_path / "latest.json").exists()
    t2 = make_trainer()
    t2.load(path)
    for a, b in [(tr.G, t2.G), (tr.D, t2.D), (tr.G_ema, t2.G_ema)]:
        for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), n
    assert torch.equal(tr.augment.p, t2.augment.p) and float(tr.augment.p) != 0.3  # ADA moved p
    assert torch.equal(tr.pl_mean, t2.pl_mean) and float(t2.pl_mean) > 0
    assert (t2.cur_nimg, t2.step_idx, t2.sampler) == (tr.cur_nimg, tr.step_idx, tr.sampler)
    for o1, o2 in [(tr.opt_G, t2.opt_G), (tr.opt_D, t2.opt_D)]:
        s1, s2 = o1.state_dict(), o2.state_dict()
        assert s1["param_groups"] == s2["param_groups"]
        for i in s1["state"]:
            for k in s1["state"][i]:
                assert torch.equal(s1["state"][i][k], s2["state"][i][k])
    assert torch.equal(torch.get_rng_state(), ckpt.load_checkpoint(path)[0]["rng.torch"])
    G = ckpt.load_generator(path)
    for (n, x), (_, y) in zip(G.state_dict().items(), tr.G_ema.state_dict().items()):
        assert torch.equal(x, y), n
    assert ckpt.load_discriminator(path)(torch.zeros(2, 1, 32, 32)).shape == (2,)


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "latest.safetensors"
    ckpt.save_checkpoint(path, {"x": torch.zeros(3)}, {"kimg": 1}, sidecar=False)

    def boom(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(path, {"x": torch.ones(3)}, {"kimg": 2}, sidecar=False)
    monkeypatch.undo()
    tensors, meta = ckpt.load_checkpoint(path)
    assert torch.equal(tensors["x"], torch.zeros(3)) and meta["kimg"] == 1
    assert sorted(os.listdir(tmp_path)) == ["latest.safetensors"]


def test_config_mismatch_is_a_clear_error(tmp_path):
    tr = make_trainer()
    path = tr.save(tmp_path / "run.safetensors")
    other = make_trainer(resolution=64, channel_max=16)
    with pytest.raises(ckpt.CheckpointMismatchError) as e:
        other.load(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "resolution=32 but config says 64" in msg and "channel_max=32 but config says 16" in msg


def test_loading_never_unpickles():
    src = inspect.getsource(ckpt)
    assert "import pickle" not in src and "torch.load(" not in src and "pickle.load" not in src


def test_presets():
    p = get_preset("paper256")
    assert (p.batch, p.mbstd_group, p.channel_base, p.channel_max) == (16, 4, 16384, 512)
    assert abs(p.gamma - 0.8192) < 1e-9 and p.ema_kimg == 5.0 and p.map_layers == 2
    p5 = get_preset("paper512")
    assert (p5.batch, p5.channel_base) == (8, 32768) and abs(p5.gamma - 6.5536) < 1e-9
    assert get_preset("cpu64", total_kimg=3).total_kimg == 3
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
