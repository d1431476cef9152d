"""`score --encoder ENC` without --run: the generator is the one the encoder names.

A shipped encoder folder names it in manifest.json (gan.path); a train-encoder run records it in its
checkpoint's "gan" entry (written by `train-encoder --run GAN`). Nothing is looked for beside the default
run (data/pretrained/encoder64), and an encoder whose generator cannot be found is a clear error.
"""
import csv
import json
import shutil

import pytest

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.cli import main
from hqanogan_core.pipeline import load_pipeline

# `shipped` (tiny 32 px phantom + GAN + encoder, exported) is a session fixture in conftest.py


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Fitted scorers are cached under HQANOGAN_CACHE: keep them out of the repository."""
    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / "cache"))


def _score(shipped, tmp_path, encoder, capsys) -> list[dict]:
    """Run `score --encoder ENCODER` (no --run) on the tiny phantom's test split; the CSV's rows."""
    out = tmp_path / "scores.csv"
    rc = main(["score", "--data", str(shipped["data"]), "--out", str(out), "--encoder", str(encoder)])
    assert rc == 0, capsys.readouterr().err
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == shipped["n_test"] and all(r["pred_score"] not in ("", "nan") for r in rows)
    return rows


def _train_encoder_cli(gan, data, out=None) -> None:
    """`train-encoder --run GAN [--out OUT]` for two steps of batch 2 on the CPU."""
    args = ["train-encoder", "--run", str(gan), "--data", str(data), "--steps", "2", "--batch", "2",
            "--device", "cpu", "--no-progress"]
    assert main(args + (["--out", str(out)] if out is not None else [])) == 0


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_shipped_encoder_alone(shipped, tmp_path, capsys):
    pipe = load_pipeline(encoder=shipped["enc"])
    assert pipe.info["gan_kind"] == "pretrained" and pipe.info["encoder_kind"] == "pretrained"
    assert pipe.info["gan"].endswith("gan32")
    rows = _score(shipped, tmp_path, shipped["enc"], capsys)
    assert {r["gt_label"] for r in rows} == {"0", "1"}


def test_train_encoder_run_alone(shipped, tmp_path, capsys):
    run = tmp_path / "enc_cli"
    _train_encoder_cli(shipped["gan"], shipped["data"], run)
    meta = ckpt.read_meta(run / "encoder.safetensors")
    assert meta["gan"]["abs_path"] == str(shipped["gan"].resolve())
    assert (run / meta["gan"]["path"]).resolve() == shipped["gan"].resolve()
    for encoder in (run, run / "encoder.safetensors"):             # the folder or its checkpoint
        pipe = load_pipeline(encoder=encoder)
        assert pipe.info["gan_kind"] == "pretrained" and pipe.info["encoder_kind"] == "train-encoder checkpoint"
    _score(shipped, tmp_path, run, capsys)
    # moved away from its generator: the relative path breaks, the absolute one still finds it
    moved = tmp_path / "elsewhere" / "deeper" / "enc"
    shutil.copytree(run, moved)
    assert load_pipeline(encoder=moved).info["gan"] == pipe.info["gan"]


def test_train_encoder_in_a_train_gan_run(shipped, tmp_path, capsys):
    """train-encoder's default --out is RUN/encoder; that folder alone scores with RUN's generator."""
    gan_run = tmp_path / "gan_run"
    shutil.copytree(shipped["root"] / "gan_run", gan_run)
    _train_encoder_cli(gan_run, shipped["data"])
    pipe = load_pipeline(encoder=gan_run / "encoder")
    assert pipe.info["gan_kind"] == "train-gan checkpoint" and pipe.info["gan"].endswith("latest.safetensors")
    _score(shipped, tmp_path, gan_run / "encoder", capsys)


def test_clear_errors_when_the_generator_cannot_be_found(shipped, tmp_path, capsys):
    # a shipped encoder folder copied without the generator its manifest names
    lone = tmp_path / "lone" / "encoder32"
    shutil.copytree(shipped["enc"], lone)
    gan_rel = json.loads((lone / "manifest.json").read_text())["gan"]["path"]
    err = _error(capsys, ["score", "--data", str(shipped["data"]), "--out", str(tmp_path / "s.csv"),
                          "--encoder", str(lone)])
    assert f"cannot find the generator of encoder {lone}" in err
    assert str((lone / gan_rel).resolve()) in err and "manifest.json" in err
    assert "encoder64" not in err                                  # not the default run's folder

    # a train-encoder run that records no generator (trained from a callable) and has none above it
    enc_run = shipped["enc_run"]
    assert ckpt.read_meta(enc_run / "encoder.safetensors").get("gan") is None
    err = _error(capsys, ["score", "--data", str(shipped["data"]), "--out", str(tmp_path / "s.csv"),
                          "--encoder", str(enc_run)])
    assert f"cannot find the generator of encoder {enc_run}" in err
    assert str(enc_run.parent.resolve()) in err and "records no generator" in err

    # a recorded generator that has gone
    run = tmp_path / "enc_cli"
    gan_copy = tmp_path / "gan_copy"
    shutil.copytree(shipped["gan"], gan_copy)
    _train_encoder_cli(gan_copy, shipped["data"], run)
    shutil.rmtree(gan_copy)
    err = _error(capsys, ["score", "--data", str(shipped["data"]), "--out", str(tmp_path / "s.csv"),
                          "--encoder", str(run)])
    assert f"cannot find the generator of encoder {run}" in err and str(gan_copy) in err

    err = _error(capsys, ["score", "--data", str(shipped["data"]), "--out", str(tmp_path / "s.csv"),
                          "--encoder", str(tmp_path / "nothing")])
    assert f"encoder {tmp_path / 'nothing'} does not exist" in err


def test_train_encoder_folder_given_as_run(shipped, tmp_path):
    """`--run OUT/encoder` (as the pipeline lays it out, e.g. for `explain`) is the encoder alone, not a GAN."""
    run = tmp_path / "out" / "encoder"
    _train_encoder_cli(shipped["gan"], shipped["data"], run)
    by_run, by_encoder = load_pipeline(run), load_pipeline(encoder=run)
    assert by_run.info["encoder"] == by_encoder.info["encoder"] and by_run.info["gan"].endswith("gan32")
    assert by_run.info["encoder_kind"] == "train-encoder checkpoint"
