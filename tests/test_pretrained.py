"""Pretrained GAN export / load: round trip on a tiny run, format errors, and the shipped folder's SWD."""
import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from hqanogan_core import pretrained as pt
from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset
from hqanogan_core import checkpoint as ckpt
from hqanogan_core.train.export import export_gan, training_time
from hqanogan_core.train.gan import load_images, train_gan
from hqanogan_core.presets import GanTrainConfig

TINY = dict(resolution=32, channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, swd_images=8,
            r1_interval=4, pl_interval=2, augment_p=0.2, ada_kimg=0.5, ada_interval=2, total_kimg=0.024,
            log_kimg=0.012, snapshot_kimg=0.024, swd_kimg=0.024)
COMMAND = "python -m hqanogan_core train-gan --data DATA --out RUN --preset cpu32 --kimg 0.024"

# Tolerance for the shipped manifest's export-time SWD, recomputed with the same recipe (same N, seeds,
# const noise, CPU). Measured on a 64 px cpu64 export (N 256): the same recipe reproduced the value to
# the last digit across runs and thread counts (1 vs 2 threads), while changing only the recipe's seed
# moved it by -0.7 % to +1.6 % (seeds 1-3 vs 0). 0.5 % passes float-level drift (an equivalent but
# re-ordered network implementation, another CPU) and fails changes as large as redrawing the samples.
SHIPPED_SWD_RTOL = 0.005


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    data = root / "phantom32"
    write_phantom_dataset(data, n_train=16, n_test=0, n_valid=0, seed=3, config=PhantomConfig(size=32),
                          workers=1, progress=False)
    run = root / "run"
    train_gan(data, run, GanTrainConfig(**TINY), progress=False)
    (run / "REVISION").write_text("0123abc\n")
    out = root / "export"
    manifest = export_gan(run, out, COMMAND, note="test", data_dir=data, swd_n=16, swd_seed=5)
    return {"data": data, "run": run, "out": out, "manifest": manifest}


def test_round_trip_weights_equal(tiny_run):
    G, D, manifest = pt.load_pretrained_gan(tiny_run["out"])
    tensors, _ = ckpt.load_checkpoint(tiny_run["run"] / "latest.safetensors")
    for prefix, net in (("G_ema", G), ("D", D)):
        saved = ckpt.unprefixed(prefix, tensors)
        state = net.state_dict()
        assert set(saved) == set(state)
        for k, v in saved.items():
            assert torch.equal(state[k], v), (prefix, k)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    # only G_ema and D are shipped: no optimiser state, RNG, G or ADA statistics
    keys = load_file(str(tiny_run["out"] / "gan.safetensors")).keys()
    assert keys and all(k.startswith(("G_ema.", "D.")) for k in keys)
    assert any(k.startswith("D.") for k in keys)


def test_manifest_fields_and_sizes(tiny_run):
    m, out = tiny_run["manifest"], tiny_run["out"]
    assert m == json.loads((out / "manifest.json").read_text())
    for key in ("format", "config", "architecture", "command", "preset", "seed", "code", "training", "swd_export",
                "files", "total_bytes", "export", "weights", "note"):
        assert key in m, key
    assert m["format"] == pt.FORMAT and m["command"] == COMMAND and m["preset"] == "cpu32" and m["note"] == "test"
    assert m["config"] == GanTrainConfig(**TINY).to_dict() and m["seed"] == 0
    assert m["architecture"]["num_ws"] == 8 and m["architecture"]["generator"]["resolution"] == 32
    assert m["code"]["revision_at_training"] == "0123abc" and "dirty" in m["code"]
    t = m["training"]
    assert t["kimg"] == pytest.approx(0.024) and t["steps"] == 6 and t["device"] == "cpu"
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert t["step_seconds"] == pytest.approx(training_time(lines), abs=0.06) and t["step_seconds"] > 0
    assert t["final_swd"] == lines[-1]["swd"] and t["wall_clock"]["seconds"] >= 0
    assert m["weights"]["dtype"] == "float32"
    # size accounting: every shipped file, the manifest included, with its true size
    assert set(m["files"]) == {"gan.safetensors", "manifest.json", "log.jsonl", "samples.png"}
    for name, info in m["files"].items():
        assert (out / name).stat().st_size == info["bytes"], name
    assert m["total_bytes"] == sum(p.stat().st_size for p in out.iterdir())
    assert m["swd_export"]["recipe"]["n"] == 16 and m["swd_export"]["recipe"]["seed"] == 5


def test_export_swd_recipe_is_exact(tiny_run):
    m = tiny_run["manifest"]
    # the regenerated real set is bit-identical to what the training loader read from the PNGs
    real = pt.real_images_for_swd(m)
    assert torch.equal(real, load_images(tiny_run["data"], 32)[:16])
    G, _, _ = pt.load_pretrained_gan(tiny_run["out"])
    assert pt.swd_from_recipe(G, m, real=real)["avg"] == pytest.approx(m["swd_export"]["avg"], rel=1e-6)


def test_float16_when_too_big(tiny_run, tmp_path):
    m = export_gan(tiny_run["run"], tmp_path / "f16", COMMAND, data_dir=tiny_run["data"], swd_n=8, size_limit=1000)
    assert m["weights"]["dtype"] == "float16"
    stored = load_file(str(tmp_path / "f16" / "gan.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    G16, _, _ = pt.load_pretrained_gan(tmp_path / "f16")
    G32, _, _ = pt.load_pretrained_gan(tiny_run["out"])
    assert next(G16.parameters()).dtype == torch.float32
    for (k, a), b in zip(G32.state_dict().items(), G16.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-3, msg=k)


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_clear_errors(tiny_run, tmp_path):
    out = tiny_run["out"]
    assert pt.pretrained_gan_available(out) and not pt.pretrained_gan_available(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing"):
        pt.load_pretrained_gan(tmp_path / "nothing")

    # a pickle in place of the weights: refused before anything is unpickled, naming the file
    bad = _copy(out, tmp_path / "pickled")
    torch.save({"x": torch.zeros(2)}, bad / "gan.safetensors")
    with pytest.raises(pt.PretrainedFormatError, match=r"pickled.*gan\.safetensors.*not a safetensors file"):
        pt.load_pretrained_gan(bad)

    # a safetensors file of another kind (a training checkpoint has no pretrained header)
    bad = _copy(out, tmp_path / "other")
    save_file({"G_ema.x": torch.zeros(2)}, str(bad / "gan.safetensors"), metadata={"something": "else"})
    with pytest.raises(pt.PretrainedFormatError, match=r"other.*gan\.safetensors.*not an hqanogan pretrained GAN"):
        pt.load_pretrained_gan(bad)

    # wrong manifest format
    bad = _copy(out, tmp_path / "fmt")
    m = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps(dict(m, format="something-v9")))
    with pytest.raises(pt.PretrainedFormatError, match=r"fmt.*manifest\.json.*something-v9"):
        pt.load_pretrained_gan(bad)

    # architecture in the manifest does not match the stored shapes
    bad = _copy(out, tmp_path / "shape")
    m["architecture"]["generator"]["channel_max"] = 16
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(pt.PretrainedFormatError, match=r"shape.*gan\.safetensors.*G_ema.*shape mismatch"):
        pt.load_pretrained_gan(bad)


def test_weights_file_is_plain_safetensors(tiny_run):
    raw = (tiny_run["out"] / "gan.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert json.loads(header["__metadata__"][pt.HEADER_KEY])["format"] == pt.FORMAT
    assert b"\x80\x04\x95" not in raw[:8 + n]  # no pickle protocol-4 frame in the header


# ----------------------------------------------------------------------------- the shipped folder

SHIPPED = pt.default_gan_path()


@pytest.mark.skipif(not (SHIPPED / "manifest.json").exists(),
                    reason=f"no shipped pretrained GAN at {SHIPPED} (export one with "
                           "`python -m hqanogan_core.train.export RUN data/pretrained/gan64 --command ...`)")
def test_shipped_gan_reproduces_its_swd():
    G, D, m = pt.load_pretrained_gan(SHIPPED)
    total = sum(p.stat().st_size for p in SHIPPED.iterdir() if p.is_file())
    assert total < 10_000_000, f"{SHIPPED} holds {total} bytes (limit 10 MB)"
    assert m["total_bytes"] == total
    assert m["swd_export"] is not None, "the shipped GAN must carry an export-time SWD"
    got = pt.swd_from_recipe(G, m)["avg"]
    assert got == pytest.approx(m["swd_export"]["avg"], rel=SHIPPED_SWD_RTOL), (got, m["swd_export"])
