"""End to end on tiny networks: export an encoder beside its generator, load the pair, score a folder
with the CLI (CSV + maps), and run `hqanogan` through the benchmark harness."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hqanogan_core import pretrained as pt
from hqanogan_core.benchmark import MAP_SCALE, load_score_terms, run_benchmark
from hqanogan_core.cli import main
from hqanogan_core.data.folder import read_grayscale
from hqanogan_core.data.splits import to_model_input
from hqanogan_core.pipeline import load_pipeline, split_held_out
from hqanogan_core import scores
from hqanogan_core.methods.hqanogan import DEFAULT_SCORE
from hqanogan_core.terms import slot_of


def tiny_default(num_ws: int):
    """DEFAULT_SCORE as a generator with `num_ws` W+ slots scores it: a slot it lacks is skipped."""
    return DEFAULT_SCORE.replace(terms=tuple(t for t in DEFAULT_SCORE.terms if (slot_of(t) or 0) < num_ws))


def combine(columns: dict, config) -> np.ndarray:
    """The combined score from z_<term> columns under a ScoreConfig."""
    z = {t: columns[f"z_{t}"] for t in config.terms}
    return scores.combine(z, config.terms, config.weights, config.combine)
from hqanogan_core import checkpoint as ckpt

# `shipped` (tiny 32 px phantom + GAN + encoder, exported) is a session fixture in conftest.py


def test_exported_encoder_round_trip_and_manifest(shipped):
    pipe = load_pipeline(shipped["enc"])
    tensors, meta = ckpt.load_checkpoint(shipped["enc_run"] / "encoder.safetensors")
    state = pipe.E.state_dict()
    saved = ckpt.unprefixed("E", tensors)
    assert set(saved) == set(state) and all(torch.equal(state[k], v) for k, v in saved.items())
    assert all(k.startswith("E.") for k in load_file(str(shipped["enc"] / "encoder.safetensors")))
    m = shipped["manifest"]
    assert m["format"] == pt.ENCODER_FORMAT and m["perceptual"] == meta["perceptual"]
    assert m["perceptual"].startswith(("stlpips", "lpips"))
    assert (shipped["enc"] / m["gan"]["path"]).resolve() == shipped["gan"].resolve()
    assert m["training"]["steps"] == shipped["tiny_enc"]["steps"]
    rec = m["reconstruction"]["mean_and_sem"]
    assert set(rec) == {"l1", "psnr", "ssim", "perceptual"} and all(np.isfinite(v[0]) for v in rec.values())
    on_disk = sum(p.stat().st_size for p in shipped["enc"].iterdir())
    assert m["total_bytes"] == on_disk
    assert pipe.info["encoder_kind"] == "pretrained" and pipe.info["gan_kind"] == "pretrained"
    assert not any(p.requires_grad for p in pipe.E.parameters()) and not pipe.E.training


def test_pipeline_from_gan_plus_checkpoint_and_clear_errors(shipped, tmp_path):
    pipe = load_pipeline(shipped["gan"], encoder=shipped["enc_run"])
    assert pipe.info["encoder_kind"] == "train-encoder checkpoint"
    with pytest.raises(FileNotFoundError, match="no encoder for"):
        load_pipeline(shipped["gan"])
    with pytest.raises(FileNotFoundError, match="holds no generator"):
        load_pipeline(tmp_path)
    # an encoder folder whose manifest names a generator with other weights
    bad = tmp_path / "enc_bad"
    shutil.copytree(shipped["enc"], bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["gan"]["path"] = str(shipped["gan"].resolve())
    m["gan"]["sha256"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(pt.PretrainedFormatError, match="trained for a generator"):
        load_pipeline(bad)
    (bad / "encoder.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(pt.PretrainedFormatError, match="encoder.safetensors"):
        pt.load_pretrained_encoder(bad)


def test_score_cli_writes_csv_and_maps(shipped, tmp_path, capsys):
    out, maps = tmp_path / "scores.csv", tmp_path / "maps"
    code = main(["score", "--run", str(shipped["enc"]), "--data", str(shipped["data"]), "--out", str(out),
                 "--maps", str(maps)])
    assert code == 0, capsys.readouterr().err
    assert "AUROC" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == shipped["n_test"]
    num_ws = load_pipeline(shipped["enc"]).G.num_ws
    config = tiny_default(num_ws)
    for name in ("pred_score", *config.terms, *(f"z_{t}" for t in config.terms)):
        assert name in rows[0], name
    assert f"latent_l{num_ws}" not in rows[0]                            # no slot the generator lacks
    assert "cycle" not in rows[0] or "cycle" in DEFAULT_SCORE.terms       # only the configured terms are computed
    column = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith("z_") or k == "pred_score"}
    # the combined score is the default configuration's combination of the standardised terms
    np.testing.assert_allclose(column["pred_score"], combine(column, config), rtol=1e-5, atol=1e-5)
    # z-scores are standardised raw terms: same ordering as the raw values
    first_term = DEFAULT_SCORE.terms[0]
    raw = np.array([float(r[first_term]) for r in rows])
    z = np.array([float(r[f"z_{first_term}"]) for r in rows])
    assert np.array_equal(np.argsort(raw), np.argsort(z))
    pngs = sorted(p for p in maps.rglob("*.png"))
    assert len(pngs) == shipped["n_test"] and json.loads((maps / "maps.json").read_text())["png"] == "16-bit grayscale"
    first = read_grayscale(pngs[0]) * MAP_SCALE          # back in residual units
    assert first.shape == (32, 32) and first.max() > 0
    # bad input: exit code 2 and a message naming the folder
    assert main(["score", "--run", str(shipped["enc"]), "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_hqanogan_in_the_benchmark_harness(shipped, tmp_path):
    fitted = {}
    report = run_benchmark(shipped["data"], ["mean", "hqanogan"], out=tmp_path, n_boot=50, fitted=fitted,
                           method_options={"hqanogan": {"run": shipped["enc"]}}, log=open("/dev/null", "w"))
    method = fitted["hqanogan"].method          # fitted holds MethodRun objects; .method is the fitted HQAnoGAN
    assert method.scorer.gaussians.means.shape == (method.pipe.G.num_ws, 32)
    r = report["methods"]["hqanogan"]
    assert 0 <= r["image"]["auroc"]["value"] <= 1
    assert set(r["per_type"]) == set(report["methods"]["mean"]["per_type"])
    assert r["pixel_auroc"] is not None
    terms = load_score_terms(tmp_path, "hqanogan")   # every score term is kept beside pred_score
    # the combined score (column pred_score, formerly "hqanogan") is the default configuration's combination
    config = tiny_default(method.pipe.G.num_ws)
    np.testing.assert_allclose(terms["pred_score"], combine(terms, config), rtol=1e-5, atol=1e-5)
    assert "hqanogan" not in terms
    assert set(config.terms) | {f"z_{t}" for t in config.terms} <= set(terms)
    assert set(load_score_terms(tmp_path, "mean")) == {"pred_score"}
    assert r["info"]["encoder_kind"] == "pretrained" and r["peak_rss_mb"] > 0


def test_split_held_out():
    fit, held = split_held_out(100, 0.1, seed=3)
    assert len(held) == 10 and len(fit) == 90
    assert set(fit).isdisjoint(held) and set(fit) | set(held) == set(range(100))
    assert np.array_equal(held, split_held_out(100, 0.1, seed=3)[1])
    assert not np.array_equal(held, split_held_out(100, 0.1, seed=4)[1])
    with pytest.raises(ValueError, match="fraction"):
        split_held_out(100, 1.5)
    with pytest.raises(ValueError, match="at least 4"):
        split_held_out(3, 0.5)


def test_to_model_input():
    imgs = np.stack([np.zeros((8, 8)), np.ones((8, 8))]).astype(np.float32)
    x = to_model_input(imgs, 8)
    assert x.shape == (2, 1, 8, 8) and x[0].max() == -1 and x[1].min() == 1
    y = to_model_input(imgs, 16)
    assert y.shape == (2, 1, 16, 16) and torch.allclose(y[1], torch.ones_like(y[1]))


def test_encoder_ablation_trains_evaluates_and_caches(shipped, tmp_path):
    from hqanogan_core.ablation import run_encoder_ablation

    G, D, _ = pt.load_pretrained_gan(shipped["gan"])
    variants = {"W+ (all losses)": {"width": 8, "blocks": (1, 1, 1, 1)},
                "single w": {"encoder": "single", "width": 8, "blocks": (1, 1, 1, 1)}}
    kw = dict(steps=2, batch=4, variants=variants, n_fit=20, log=lambda *a: None)
    res = run_encoder_ablation(G, D, shipped["data"], tmp_path, **kw)
    assert list(res) == list(variants)
    for r in res.values():
        assert set(r["reconstruction"]) == {"l1", "psnr", "ssim", "perceptual"}
        assert {"image_residual", "latent", "hqanogan"} <= set(r["auroc"]) and len(r["scores"]) == 10
        assert r["train_seconds"] > 0 and r["log"][-1]["step"] == 2
    assert res["single w"]["encoder"].__class__.__name__ == "SingleWEncoder"
    # a second call loads the finished runs: same weights, no new log lines
    log_before = (tmp_path / "single_w" / "log.jsonl").read_text()
    again = run_encoder_ablation(G, D, shipped["data"], tmp_path, **kw)
    assert (tmp_path / "single_w" / "log.jsonl").read_text() == log_before
    for k, v in res["single w"]["encoder"].state_dict().items():
        assert torch.equal(v, again["single w"]["encoder"].state_dict()[k]), k
    # a cached run longer than asked for is not this variant: it is retrained
    short = run_encoder_ablation(G, D, shipped["data"], tmp_path, **{**kw, "steps": 1})
    assert short["single w"]["log"][-1]["step"] == 1


def test_score_cli_takes_a_score_config(shipped, tmp_path, capsys):
    """`--set hqanogan.score={...}` changes the configuration: only its terms are computed and combined."""
    out = tmp_path / "scores.csv"
    code = main(["score", "--run", str(shipped["enc"]), "--data", str(shipped["data"]), "--out", str(out),
                 "--set", 'hqanogan.score={"terms": ["perceptual", "image_residual"], "aggregation": "max", '
                          '"combine": "max", "refine_steps": 0}'])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out)))
    assert {k for k in rows[0] if k not in ("image", "anomaly_type", "gt_label")} == {
        "pred_score", "perceptual", "image_residual", "z_perceptual", "z_image_residual"}
    for r in rows:
        assert float(r["pred_score"]) == pytest.approx(max(float(r["z_perceptual"]), float(r["z_image_residual"])),
                                                       rel=1e-5, abs=1e-5)
    bad = main(["score", "--run", str(shipped["enc"]), "--data", str(shipped["data"]), "--out", str(out),
                "--set", 'hqanogan.score={"terms": ["nope"]}'])
    assert bad == 2 and "unknown score terms ['nope']" in capsys.readouterr().err
