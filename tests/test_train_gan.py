"""Training loop: hyper-parameter maths, a short end-to-end run, bit-exact resume, 2-process DDP."""
import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from hqanogan_core.train.gan import GanTrainer, ema_beta, lazy_adam_hparams, load_images, train_gan
from hqanogan_core.presets import GanTrainConfig

TINY = dict(resolution=32, channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, swd_images=0,
            r1_interval=4, pl_interval=2, augment_p=0.2, ada_kimg=0.5, ada_interval=2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    good = root / "train" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        arr = (rng.random((40, 40)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(good / f"{i:03d}.png")
    # one 16-bit image
    Image.fromarray((rng.random((40, 40)) * 65535).astype(np.uint16)).save(good / "999.png")
    return root


def test_lazy_adam_correction_by_hand():
    lr, betas = lazy_adam_hparams(0.0025, (0.0, 0.99), 16)
    c = 16 / 17
    assert lr == pytest.approx(0.0025 * c) and betas[0] == 0.0 and betas[1] == pytest.approx(0.99 ** c)
    assert betas[1] == pytest.approx(0.9905855, abs=1e-6)  # exp(16/17 * ln 0.99)
    lr, betas = lazy_adam_hparams(0.0025, (0.0, 0.99), 4)
    assert lr == pytest.approx(0.002) and betas[1] == pytest.approx(0.99 ** 0.8)
    assert lazy_adam_hparams(0.1, (0.5, 0.9), None) == (0.1, (0.5, 0.9))


def test_ema_beta():
    assert ema_beta(32, 10**9, 10, None) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(32, 1000, 10, 0.05) == pytest.approx(0.5 ** (32 / 50))  # ramp-up: min(10000, 1000*0.05)


def test_load_images(data_dir):
    x = load_images(data_dir, 32, 1)
    assert x.shape == (11, 1, 32, 32) and x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert load_images(data_dir, 32, 3).shape == (11, 3, 32, 32)


def test_short_run_writes_log_samples_checkpoint(data_dir, tmp_path):
    cfg = GanTrainConfig(**{**TINY, "total_kimg": 0.024, "log_kimg": 0.012, "snapshot_kimg": 0.024,
                            "swd_images": 8, "swd_kimg": 0.024})
    out = train_gan(data_dir, tmp_path / "run", cfg, progress=False)
    assert out["kimg"] == pytest.approx(0.024) and out["steps"] == 6
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for k in ("kimg", "loss_G", "loss_D", "r1", "pl", "p", "r_t", "s_per_kimg", "peak_mem_mb"):
        assert k in lines[0], k
    assert "swd" in lines[-1] and np.isfinite(lines[-1]["swd"])
    assert all(np.isfinite(v) for v in (lines[-1]["loss_G"], lines[-1]["loss_D"]))
    assert (tmp_path / "run" / "latest.safetensors").exists()
    assert list((tmp_path / "run").glob("samples_kimg*.png"))


def test_resume_is_bit_exact(data_dir, tmp_path):
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        full = GanTrainConfig(**{**TINY, "total_kimg": 0.032, "snapshot_kimg": 1.0, "log_kimg": 1.0})
        half = GanTrainConfig(**{**TINY, "total_kimg": 0.016, "snapshot_kimg": 1.0, "log_kimg": 1.0})
        a = train_gan(data_dir, tmp_path / "straight", full, progress=False)["trainer"]
        train_gan(data_dir, tmp_path / "resumed", half, progress=False)
        torch.manual_seed(12345)  # disturb global RNG: resume must restore it
        b = train_gan(data_dir, tmp_path / "resumed", full, resume=True, progress=False)["trainer"]
    finally:
        torch.use_deterministic_algorithms(prev)
    assert a.step_idx == b.step_idx == 8
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"
    assert torch.equal(a.augment.p, b.augment.p) and torch.equal(a.pl_mean, b.pl_mean)


# ----------------------------------------------------------------------------- DDP (2 gloo processes on CPU)


def _ddp_worker(rank, world, port, data_dir, out_dir, result_dir):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    cfg = GanTrainConfig(**{**TINY, "batch": 4, "mbstd_group": 2, "total_kimg": 0.016, "snapshot_kimg": 1.0,
                            "log_kimg": 1.0, "device": "cpu"})
    tr = train_gan(data_dir, out_dir, cfg, progress=False)["trainer"]
    state = {f"{n}.{k}": v.contiguous() for n in ("G", "D", "G_ema") for k, v in getattr(tr, n).state_dict().items()}
    state["p"] = tr.augment.p.reshape(1)
    save_file(state, f"{result_dir}/rank{rank}.safetensors")
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_stay_identical(data_dir, tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        mp.spawn(_ddp_worker, args=(2, port, str(data_dir), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
                 join=True)
    except (OSError, PermissionError) as e:  # platform cannot spawn / bind
        pytest.skip(f"cannot spawn processes here: {e}")
    from safetensors.torch import load_file

    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert (tmp_path / "run" / "latest.safetensors").exists()
    # and training moved the weights away from the initialisation
    fresh = GanTrainer(GanTrainConfig(**TINY), torch.zeros(4, 1, 32, 32), torch.device("cpu"))
    assert not torch.equal(fresh.G.state_dict()["synthesis.blocks.0.const"], r0["G.synthesis.blocks.0.const"])


def test_cli_train_gan_then_resume(data_dir, tmp_path, capsys):
    from hqanogan_core.cli import main

    run = tmp_path / "cli_run"
    args = ["train-gan", "--data", str(data_dir), "--out", str(run), "--preset", "cpu32", "--batch", "4",
            "--no-progress", "--device", "cpu"]
    assert main(args + ["--kimg", "0.008"]) == 0
    out = capsys.readouterr().out
    first = json.loads(out[out.index("{"):])
    assert first["kimg"] == pytest.approx(0.008)
    assert main(args + ["--kimg", "0.016", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out
    assert json.loads(out[out.index("{"):])["kimg"] == pytest.approx(0.016)
    assert main(["train-gan", "--data", str(data_dir), "--out", str(run), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_cli_train_encoder_on_a_gan_run(data_dir, tmp_path, capsys):
    from hqanogan_core.cli import main

    cfg = GanTrainConfig(**{**TINY, "total_kimg": 0.008, "snapshot_kimg": 0.008})
    train_gan(data_dir, tmp_path / "run", cfg, progress=False)
    code = main(["train-encoder", "--run", str(tmp_path / "run"), "--data", str(data_dir), "--steps", "2",
                 "--batch", "2", "--device", "cpu", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["steps"] == 2 and summary["perceptual"].startswith(("stlpips", "lpips"))
    assert (tmp_path / "run" / "encoder" / "encoder.safetensors").exists()
    assert main(["train-encoder", "--run", str(tmp_path), "--data", str(data_dir)]) == 2
    assert "holds no generator" in capsys.readouterr().err
