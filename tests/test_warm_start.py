"""Continuing shipped networks (`train-gan --init-from`, `train-encoder --init-from`): the run starts from the
shipped weights and counters, keeps the shipped log, records where it came from, and refuses another
architecture. Uses conftest's session-scoped `shipped` folders (gan32 + encoder32)."""
import pytest
import torch

from hqanogan_core import checkpoint as ckpt
from hqanogan_core import pretrained as pt
from hqanogan_core.presets import GanTrainConfig
from hqanogan_core.train.encoder import EncoderTrainConfig, train_encoder
from hqanogan_core.train.export import export_encoder, export_gan
from hqanogan_core.train.gan import train_gan
from hqanogan_core.train.loop import read_log

# conftest's tiny networks (TINY_GAN, TINY_ENC), repeated here because tests do not import conftest
GAN = dict(resolution=32, channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, swd_images=0,
           r1_interval=4, pl_interval=2, augment_p=0.0, log_kimg=0.008, snapshot_kimg=0.016)
ENC = dict(batch=4, width=8, blocks=(1, 1, 1, 1), log_every=1, snapshot_every=3, device="cpu", lambda_perceptual=0.0)


def states_equal(a: torch.nn.Module, b: torch.nn.Module, skip=()) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


@pytest.fixture(scope="module")
def continued_gan(shipped, tmp_path_factory):
    """The shipped tiny GAN trained 16 more images (4 steps) with --init-from, and exported."""
    root = tmp_path_factory.mktemp("warm")
    shipped_kimg = pt.read_manifest(shipped["gan"])["training"]["kimg"]
    cfg = GanTrainConfig(**GAN, total_kimg=shipped_kimg + 0.016)
    out = train_gan(shipped["data"], root / "run", cfg, progress=False, init_from=shipped["gan"])
    manifest = export_gan(root / "run", root / "gan", "python -m hqanogan_core train-gan --init-from ...",
                          data_dir=shipped["data"], swd_n=8)
    return {"root": root, "out": out, "manifest": manifest, "shipped_kimg": shipped_kimg, "cfg": cfg}


def test_gan_warm_start_starts_from_the_shipped_weights(shipped, tmp_path):
    G_ema, D, manifest = pt.load_pretrained_gan(shipped["gan"])
    cfg = GanTrainConfig(**GAN, total_kimg=manifest["training"]["kimg"])    # nothing left to train
    trainer = train_gan(shipped["data"], tmp_path / "run", cfg, progress=False, init_from=shipped["gan"])["trainer"]
    assert trainer.cur_nimg == manifest["training"]["cur_nimg"]
    assert states_equal(trainer.G_ema, G_ema) and states_equal(trainer.G, G_ema) and states_equal(trainer.D, D)
    assert float(trainer.augment.p) == pytest.approx(read_log(shipped["gan"] / "log.jsonl")[-1]["p"])


def test_gan_warm_start_continues_log_and_records_origin(shipped, continued_gan):
    out, m = continued_gan["out"], continued_gan["manifest"]
    assert out["kimg"] == pytest.approx(continued_gan["shipped_kimg"] + 0.016)
    old = read_log(shipped["gan"] / "log.jsonl")
    new = read_log(continued_gan["root"] / "gan" / "log.jsonl")
    assert new[:len(old)] == old and len(new) > len(old)
    assert all(b["kimg"] > a["kimg"] for a, b in zip(new, new[1:]))            # one run, counted on
    assert m["training"]["kimg"] == pytest.approx(out["kimg"])
    assert m["training"]["warm_started_from"].endswith("gan32")
    G_old, _, _ = pt.load_pretrained_gan(shipped["gan"])
    G_new, _, _ = pt.load_pretrained_gan(continued_gan["root"] / "gan")
    assert not states_equal(G_old, G_new)                                     # it did train


def test_gan_resume_wins_over_init_from(shipped, continued_gan):
    run = continued_gan["root"] / "run"
    before = ckpt.load_checkpoint(run / "latest.safetensors")[0]
    again = train_gan(shipped["data"], run, continued_gan["cfg"], resume=True, progress=False,
                      init_from=shipped["gan"])["trainer"]
    assert again.cur_nimg == round(continued_gan["out"]["kimg"] * 1000)
    assert all(torch.equal(again.G_ema.state_dict()[k[len("G_ema."):]], v)
               for k, v in before.items() if k.startswith("G_ema."))


def test_gan_warm_start_rejects_another_architecture(shipped, tmp_path):
    cfg = GanTrainConfig(**{**GAN, "channel_max": 16}, total_kimg=1.0)
    with pytest.raises(ckpt.CheckpointMismatchError):
        train_gan(shipped["data"], tmp_path / "run", cfg, progress=False, init_from=shipped["gan"])


def test_encoder_warm_start_continues_for_the_continued_generator(shipped, continued_gan, tmp_path):
    E_old, m_old = pt.load_pretrained_encoder(shipped["enc"])
    gan = continued_gan["root"] / "gan"
    G, D, _ = pt.load_pretrained_gan(gan)
    steps0 = m_old["training"]["steps"]

    # no steps left: the shipped weights, with the continued generator's w_avg
    cfg = EncoderTrainConfig(**ENC, steps=steps0)
    tr = train_encoder((G, D), shipped["data"], tmp_path / "same", cfg, progress=False,
                       init_from=shipped["enc"], gan_path=gan)["trainer"]
    assert tr.step_idx == steps0
    assert states_equal(tr.E, E_old, skip=("w_avg",)) and torch.equal(tr.E.w_avg, G.w_avg)

    # two more steps: the log goes on from the shipped one, and the export says where it started
    cfg = EncoderTrainConfig(**ENC, steps=steps0 + 2)
    out = train_encoder((G, D), shipped["data"], tmp_path / "more", cfg, progress=False,
                        init_from=shipped["enc"], gan_path=gan)
    assert out["steps"] == steps0 + 2
    old = read_log(shipped["enc"] / "log.jsonl")
    new = read_log(tmp_path / "more" / "log.jsonl")
    assert new[:len(old)] == old and [ln["step"] for ln in new[len(old) + 1:]] == [steps0 + 1, steps0 + 2]
    resumed = new[len(old)]                        # the continuation's own settings, logged where it starts
    assert resumed["event"] == "continue" and resumed["at_step"] == steps0 and resumed["from"] == str(shipped["enc"])
    assert resumed["config"]["steps"] == steps0 + 2 and resumed["config"]["lr"] == cfg.lr
    m = export_encoder(tmp_path / "more", tmp_path / "enc", gan, "python -m hqanogan_core train-encoder ...")
    assert m["training"]["steps"] == steps0 + 2 and m["training"]["warm_started_from"].endswith("encoder32")
    assert m["gan"]["sha256"] == continued_gan["manifest"]["files"]["gan.safetensors"]["sha256"]
    E_new, _ = pt.load_pretrained_encoder(tmp_path / "enc")
    assert not states_equal(E_new, E_old, skip=("w_avg",))


def test_encoder_warm_start_rejects_another_architecture(shipped, tmp_path):
    G, D, _ = pt.load_pretrained_gan(shipped["gan"])
    cfg = EncoderTrainConfig(**{**ENC, "width": 16}, steps=10)
    with pytest.raises(ValueError, match=r"encoder32.*manifest\.json.*width"):
        train_encoder((G, D), shipped["data"], tmp_path / "w", cfg, progress=False, init_from=shipped["enc"])
