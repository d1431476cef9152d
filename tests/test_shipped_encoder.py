"""The shipped encoder (data/pretrained/encoder64): loads with its generator, stays small, and reproduces
the reconstruction quality recorded in its manifest on re-rendered phantom test normals."""
import numpy as np
import pytest
import torch

from hqanogan_core import pretrained as pt
from hqanogan_core.data.phantom import PhantomConfig, render_case
from hqanogan_core.nets.perceptual import PerceptualConfig, PerceptualDistance
from hqanogan_core.data.splits import to_model_input
from hqanogan_core.pipeline import load_pipeline
from hqanogan_core.recon import encode_images, reconstruction_metrics, summarise


@pytest.fixture(scope="module")
def shipped():
    path = pt.default_encoder_path()
    return path, pt.read_encoder_manifest(path), load_pipeline(path)


def test_folder_is_complete_and_small(shipped):
    path, manifest, pipe = shipped
    on_disk = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    assert manifest["total_bytes"] == on_disk < 10_000_000
    assert manifest["perceptual"].startswith(("stlpips-", "lpips-"))
    assert manifest["training"]["steps"] >= 1000 and manifest["training"]["step_seconds"] > 0
    assert pipe.info["gan_kind"] == "pretrained"
    assert (pipe.E.num_ws, pipe.E.w_dim) == (pipe.G.num_ws, pipe.G.w_dim)


def test_reconstruction_matches_manifest(shipped):
    path, manifest, pipe = shipped
    phantom = manifest["data"]["phantom"]
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in phantom["config"].items()}
    config = PhantomConfig(**cfg)
    n = int(manifest["reconstruction"]["images"].split()[2])       # "the first N normal images of test/ ..."
    # test/good/00000.png ... are render_case(seed, i, None, split="test"), stored as 8-bit PNG
    imgs = [np.round(render_case(phantom["seed"], i, None, config, split="test")[0] * 255) / 255 for i in range(n)]
    x = to_model_input(np.stack(imgs).astype(np.float32), pipe.resolution)
    percep = PerceptualDistance(PerceptualConfig(verbose=False))
    if percep.backend_name != manifest["perceptual"]:
        pytest.skip(f"perceptual backend here is {percep.backend_name}, the manifest used {manifest['perceptual']}")
    with torch.no_grad():
        _, rec = encode_images(pipe.G, pipe.E, x)
    got = summarise(reconstruction_metrics(x, rec, percep))
    want = manifest["reconstruction"]["mean_and_sem"]
    assert got["psnr"][0] == pytest.approx(want["psnr"][0], abs=0.02)
    for k in ("l1", "ssim", "perceptual"):
        assert got[k][0] == pytest.approx(want[k][0], rel=5e-3), k
    assert got["psnr"][0] > 20          # a working inversion, not the average face
