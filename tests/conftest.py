"""Test-wide settings.

- One intra-op thread: on a 2-core machine PyTorch's worker threads spin while waiting for
  each other; with any other load present a tiny model runs 30-100x slower on 2 threads
  than on 1. The tests use tiny models, so one thread is both faster and steadier.
- Hypothesis derandomised: property tests explore the same examples on every run, so a
  failure in CI reproduces locally (exploration with fresh seeds: --hypothesis-profile=explore).
"""
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")


# ----------------------------------------------------------------------------- shared fixtures

import pytest  # noqa: E402

TINY_GAN = dict(resolution=32, channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, swd_images=8,
                r1_interval=4, pl_interval=2, augment_p=0.0, total_kimg=0.016, log_kimg=0.008, snapshot_kimg=0.016,
                swd_kimg=0.016)
TINY_ENC = dict(steps=3, batch=4, width=8, blocks=(1, 1, 1, 1), log_every=1, snapshot_every=3, device="cpu")
SHIPPED_COUNTS = dict(n_train=30, n_test=16, n_valid=10)


@pytest.fixture(scope="session")
def shipped(tmp_path_factory):
    """A tiny 32 px phantom, a tiny StyleGAN2 + pSp encoder trained on it for a few steps, and both exported
    as shipped folders (gan32, encoder32). Session-scoped: test_pipeline and test_methods share it.

    Keys: root, data, gan, enc (shipped encoder folder, usable as hqanogan's `run`), enc_run (the
    train-encoder run), manifest (the encoder's), n_train / n_test / n_valid, tiny_enc (its config)."""
    from hqanogan_core import pretrained as pt
    from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset
    from hqanogan_core.presets import GanTrainConfig
    from hqanogan_core.train.encoder import EncoderTrainConfig, train_encoder
    from hqanogan_core.train.export import export_encoder, export_gan
    from hqanogan_core.train.gan import train_gan

    root = tmp_path_factory.mktemp("pipe")
    data = root / "phantom32"
    write_phantom_dataset(data, **SHIPPED_COUNTS, seed=4, config=PhantomConfig(size=32), workers=1, progress=False)
    train_gan(data, root / "gan_run", GanTrainConfig(**TINY_GAN), progress=False)
    gan = root / "pretrained" / "gan32"
    export_gan(root / "gan_run", gan, "python -m hqanogan_core train-gan ...", data_dir=data, swd_n=8)
    train_encoder(lambda: pt.load_pretrained_gan(gan)[:2], data, root / "enc_run", EncoderTrainConfig(**TINY_ENC),
                  progress=False)
    enc = root / "pretrained" / "encoder32"
    manifest = export_encoder(root / "enc_run", enc, gan, "python -m hqanogan_core train-encoder ...", note="test",
                              data_dir=data, n_recon=6)
    return {"root": root, "data": data, "gan": gan, "enc": enc, "enc_run": root / "enc_run", "manifest": manifest,
            **SHIPPED_COUNTS, "tiny_enc": dict(TINY_ENC)}


@pytest.fixture
def resume_is_bit_exact(tmp_path):
    """check(make, steps, half): a trainer from `make()` run `steps` steps straight, and one run `half`
    steps, saved, loaded into a fresh `make()` and run the rest, end with identical stats, tensors,
    optimiser and RNG state. Returns the straight run's state (tensors, meta) for further checks."""
    from hqanogan_core.train.baselines import CHECKPOINT_NAME

    def check(make, steps: int, half: int):
        straight = make()
        stats_straight = [straight.step() for _ in range(steps)]
        first = make()
        for _ in range(half):
            first.step()
        path = first.save(tmp_path / CHECKPOINT_NAME)
        resumed = make()                                     # a fresh trainer: freshly initialised nets
        fresh = {k: v.clone() for k, v in resumed.state()[0].items() if k.startswith("net.")}
        resumed.load(path)
        assert resumed.step_idx == half
        assert any(not torch.equal(fresh[k], v) for k, v in resumed.state()[0].items() if k.startswith("net.")), \
            "loading changed nothing: the comparison below would be vacuous"
        stats_resumed = [resumed.step() for _ in range(steps - half)]
        assert stats_resumed == stats_straight[half:]
        a, meta_a = straight.state()
        b, meta_b = resumed.state()
        assert sorted(a) == sorted(b)
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"tensors differ after resuming: {differ[:5]}"
        assert any(k.startswith("opt.") for k in a) and any(k.startswith("net.") for k in a)
        assert meta_a["opt"] == meta_b["opt"] and meta_a["rng"] == meta_b["rng"] and meta_a["step"] == steps
        return a, meta_a

    return check
