"""Encoder training: a short run writes log + checkpoint, loss goes down, resume is bit-exact."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.pretrained import load_encoder
from hqanogan_core.train.encoder import EncoderTrainConfig, EncoderTrainer, encoder_losses, train_encoder
from tests.tiny import phantom_like, tiny_gan, tiny_percep

FAST = dict(batch=4, width=8, blocks=(1, 1, 1, 1), log_every=2, snapshot_every=100, device="cpu", lr=3e-3)


def test_short_run_logs_backend_and_reduces_loss(tmp_path):
    G, D = tiny_gan()
    cfg = EncoderTrainConfig(steps=40, log_every=10, **{k: v for k, v in FAST.items() if k != "log_every"})
    out = train_encoder((G, D), phantom_like(), tmp_path / "enc", cfg, progress=False, percep=tiny_percep())
    lines = [json.loads(s) for s in (tmp_path / "enc" / "log.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["perceptual"] == "lpips-tiny"
    ticks = lines[1:]
    assert len(ticks) == 4 and ticks[-1]["step"] == 40
    for k in ("loss", "l2", "perceptual", "w_norm", "feat", "latent", "s_per_step"):
        assert k in ticks[0], k
    # held-out batch (half generated with known W+), same initial encoder (same seed) vs trained one
    fresh = EncoderTrainer(cfg, G, D, phantom_like(), percep=tiny_percep())
    x, ws_true = fresh._batch(10_000)

    def held_out(E):
        with torch.no_grad():
            terms, _ = encoder_losses(copy.deepcopy(E).train(), G, D, tiny_percep(), x, ws_true)
        return {k: v.item() for k, v in terms.items()}

    before, after = held_out(fresh.E), held_out(out["trainer"].E)
    assert after["l2"] < before["l2"] and after["latent"] < before["latent"], (before, after)
    meta = ckpt.read_meta(tmp_path / "enc" / "encoder.safetensors")
    assert meta["perceptual"] == "lpips-tiny" and meta["step"] == 40 and meta["kind"] == "encoder"
    assert (tmp_path / "enc" / "recon_step000040.png").exists()
    # G and D stay frozen and untouched
    assert not any(p.requires_grad for p in [*G.parameters(), *D.parameters()])
    E, _ = load_encoder(tmp_path / "enc" / "encoder.safetensors")
    x = phantom_like(2, seed=9)
    assert torch.equal(E(x), out["trainer"].E.eval()(x))


def test_resume_is_bit_exact(tmp_path):
    data = phantom_like(8)
    cfg = EncoderTrainConfig(steps=7, **FAST)        # crosses a Lookahead sync (k = 6) after the reload
    straight = train_encoder(tiny_gan(), data, tmp_path / "a", cfg, progress=False, percep=tiny_percep())
    half = EncoderTrainConfig(**{**cfg.__dict__, "steps": 3})
    train_encoder(tiny_gan(), data, tmp_path / "b", half, progress=False, percep=tiny_percep())
    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore everything
    resumed = train_encoder(tiny_gan(), data, tmp_path / "b", cfg, resume=True, progress=False, percep=tiny_percep())
    assert resumed["steps"] == 7
    sa = straight["trainer"].E.state_dict()
    sb = resumed["trainer"].E.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_default_backend_recorded_and_no_feat_without_D(tmp_path):
    G, _ = tiny_gan()
    cfg = EncoderTrainConfig(steps=1, encoder="single", **{**FAST, "batch": 2})
    good = tmp_path / "data" / "train" / "good"                   # MVTec layout on disk
    good.mkdir(parents=True)
    for i, img in enumerate(phantom_like(4)):
        Image.fromarray(((img[0].numpy() + 1) * 127.5).round().astype(np.uint8)).save(good / f"{i}.png")
    out = train_encoder((G, None), tmp_path / "data", tmp_path / "s", cfg, progress=False)  # perceptual 'auto'
    first = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[0])
    assert first["perceptual"] == out["perceptual"] in ("stlpips-alex", "lpips-alex")
    assert "feat" not in out["last"] and "latent" in out["last"]


def test_resume_rejects_other_architecture(tmp_path):
    cfg = EncoderTrainConfig(steps=1, **{**FAST, "batch": 2})
    train_encoder(tiny_gan(), phantom_like(4), tmp_path / "r", cfg, progress=False, percep=tiny_percep())
    other = EncoderTrainConfig(**{**cfg.__dict__, "steps": 2, "width": 16})
    with pytest.raises(ckpt.CheckpointMismatchError):
        train_encoder(tiny_gan(), phantom_like(4), tmp_path / "r", other, resume=True, progress=False,
                      percep=tiny_percep())
