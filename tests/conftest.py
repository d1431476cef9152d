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
