"""The book's switch (`workflow.workspace`) and the resumable pipeline (`python -m hqanogan_core pipeline`).

The "own data" fixture is the phantom written as RSNA distributes its data and converted with the project's
converter at 32 px (the tiny preset's resolution); the pipeline runs once per module with the tiny preset.
"""
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from hqanogan_core import workflow as wf
from hqanogan_core.cli import main
from hqanogan_core.paths import cache_dir, data_dir

METHODS = ("pca", "hqanogan")
SKIPPED = "already complete, skipped"


def pipeline_args(data, out, *extra):
    return ["pipeline", "--data", str(data), "--out", str(out), "--preset", "tiny", "--methods", ",".join(METHODS),
            "--no-progress", *extra]


def phantom_book_ready() -> Path:
    """The phantom book's folder when it is already generated (else skip: generating it takes a minute)."""
    from hqanogan_core.data.default import phantom_fingerprint

    root = cache_dir() / "phantom64"
    marker = root / "fingerprint.txt"
    want = phantom_fingerprint(size=64, n_train=4000, n_test=1000, n_valid=200, seed=0, severity=1.0)
    if not marker.is_file() or marker.read_text().strip() != want:
        pytest.skip(f"the phantom book is not generated in {root} (workspace() would generate it: ~1 min)")
    return root


def pipeline_lines(text: str) -> dict:
    """{step: the rest of its line} from the pipeline's '[pipeline] step: ...' lines."""
    lines = [ln[len("[pipeline] "):] for ln in text.splitlines() if ln.startswith("[pipeline] ")]
    return {ln.split(":", 1)[0]: ln.split(":", 1)[1] for ln in lines}


def done_mtimes(out: Path) -> dict:
    return {step: (out / step / wf.DONE).stat().st_mtime_ns for step in wf.STEPS}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A 32 px MVTec-layout dataset converted from an RSNA-format phantom (40 normal + 16 abnormal, 64 px)."""
    from hqanogan_core.data.convert import convert_rsna
    from hqanogan_core.data.phantom_rsna import write_phantom_rsna

    root = tmp_path_factory.mktemp("own_data")
    write_phantom_rsna(root / "rsna", n_normal=40, n_abnormal=16, size=64, seed=0)
    convert_rsna(root / "rsna", root / "data", size=32)
    return root / "data"


@pytest.fixture(scope="module")
def finished(converted, tmp_path_factory) -> dict:
    """One complete pipeline run (tiny preset, pca + hqanogan) on the converted data."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    rc = main(pipeline_args(converted, out))
    return {"out": out, "rc": rc}


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    """A copy of the finished run (mtimes kept) that a test may damage."""
    assert finished["rc"] == 0
    return Path(shutil.copytree(finished["out"], tmp_path / "run"))


def own_env(data, out, **more) -> dict:
    return {"HQANOGAN_DATA": str(data), "HQANOGAN_PRESET": "tiny", "HQANOGAN_OUT": str(out),
            "HQANOGAN_DEVICE": "cpu", **more}


# ----------------------------------------------------------------------------- the switch


def test_unset_environment_is_the_phantom_book():
    root = phantom_book_ready()
    from hqanogan_core.data.default import phantom_dataset

    ws = wf.workspace({})
    assert ws.default is True
    assert ws.preset == "cpu64"
    assert ws.resolution == 64
    assert ws.data == phantom_dataset() == root
    assert ws.device in ("cpu", "cuda")
    assert ws.uses_shipped("gan") and ws.uses_shipped("encoder")
    assert ws.options(["pca", "hqanogan"]) is None           # the shipped networks and default recipes
    assert ws.reuse() == [data_dir() / "pretrained" / "results64"]
    assert ws.knobs == wf.RUN_PRESETS["cpu64"]["book"]
    assert "phantom book" in wf.describe(ws)
    # an explicit cpu64 preset without data is the same book
    assert wf.workspace({"HQANOGAN_PRESET": "cpu64"}).default is True


def test_own_data_workspace(converted, finished):
    out = finished["out"]
    ws = wf.workspace(own_env(converted, out))
    assert ws.default is False
    assert ws.data == converted.resolve()
    assert ws.out == out
    assert ws.preset == "tiny" and ws.device == "cpu"
    assert ws.resolution == 32
    assert ws.knobs == wf.RUN_PRESETS["tiny"]["book"]
    assert ws.reuse() == []
    assert not ws.uses_shipped("gan") and not ws.uses_shipped("encoder")
    assert ws.folder("figures") == out / "book" / "figures" and (out / "book" / "figures").is_dir()

    before = done_mtimes(out)
    options = ws.options(["pca", "hqanogan", "ae", "fanogan", "deepsvdd"])
    assert done_mtimes(out) == before                      # the finished run is reused, not retrained
    assert options["hqanogan"] == {"run": str(out / "gan"), "encoder": str(out / "encoder")}
    assert options["ae"] == {"steps": 3}
    assert options["fanogan"] == {"steps": 4, "settings": {"gan_steps": 2, "batch": 8}}
    assert options["deepsvdd"] == {"steps": 4, "settings": {"pretrain_steps": 2, "batch": 16}}
    assert "pca" not in options                            # nothing to set: its defaults, on the CPU
    # the workspace's options are the pipeline's: the same budgets, the same networks
    assert options == wf.hqanogan_options(converted, out, "tiny", ["pca", "hqanogan", "ae", "fanogan", "deepsvdd"],
                                          "cpu", progress=False)


def test_shipped_matches(converted):
    from hqanogan_core import pretrained as pt

    gan_manifest = pt.read_manifest(data_dir() / "pretrained" / "gan64")
    encoder_manifest = pt.read_encoder_manifest(data_dir() / "pretrained" / "encoder64")
    for resolution in (32, 64):                            # converted data has no phantom recipe: never shipped
        assert not wf.shipped_matches(gan_manifest, converted, resolution)
        assert not wf.shipped_matches(encoder_manifest, converted, resolution)
    assert not wf.shipped_matches({}, converted, 32)
    ws = wf.workspace(own_env(converted, converted.parent / "unused_out"))
    assert not ws.uses_shipped("gan") and not ws.uses_shipped("encoder")

    phantom = phantom_book_ready()
    assert wf.shipped_matches(gan_manifest, phantom, 64)
    assert wf.shipped_matches(encoder_manifest, phantom, 64)
    assert not wf.shipped_matches(gan_manifest, phantom, 32)    # the right data at the wrong resolution


def test_data_without_train_folder(tmp_path):
    (tmp_path / "test" / "good").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="HQANOGAN_DATA") as err:
        wf.workspace({"HQANOGAN_DATA": str(tmp_path), "HQANOGAN_PRESET": "tiny"})
    assert "train/" in str(err.value) and str(tmp_path) in str(err.value)
    # the pipeline refuses the same folder with exit code 2 and the reason
    assert main(pipeline_args(tmp_path, tmp_path / "run")) == 2
    # train/ present but train/good empty: the variable and the folder are named as well
    (tmp_path / "train" / "good").mkdir(parents=True)
    with pytest.raises(ValueError) as err:
        wf.workspace({"HQANOGAN_DATA": str(tmp_path), "HQANOGAN_PRESET": "tiny"})
    assert "HQANOGAN_DATA" in str(err.value) and str(tmp_path / "train" / "good") in str(err.value)


def test_data_at_another_resolution_than_the_preset(converted, tmp_path):
    from hqanogan_core.data.folder import scan_split

    with pytest.raises(ValueError) as err:
        wf.workspace({"HQANOGAN_DATA": str(converted), "HQANOGAN_PRESET": "cpu64", "HQANOGAN_OUT": str(tmp_path)})
    message = str(err.value)
    first = scan_split(converted.resolve(), "train")[0].path
    assert str(first) in message
    assert "32 x 32 px" in message and "64 px" in message and "cpu64" in message
    assert "--size 64" in message
    # no preset at all means cpu64: the same refusal
    with pytest.raises(ValueError, match="64 px"):
        wf.workspace({"HQANOGAN_DATA": str(converted)})


def test_unknown_preset(converted):
    for env in ({"HQANOGAN_PRESET": "huge"}, {"HQANOGAN_PRESET": "huge", "HQANOGAN_DATA": str(converted)}):
        with pytest.raises(ValueError, match="unknown preset 'huge'") as err:
            wf.workspace(env)
        assert all(name in str(err.value) for name in wf.RUN_PRESETS)


def test_paper_preset_needs_data():
    with pytest.raises(ValueError) as err:
        wf.workspace({"HQANOGAN_PRESET": "paper256"})
    assert "HQANOGAN_DATA" in str(err.value) and "paper256" in str(err.value)


# ----------------------------------------------------------------------------- the pipeline


def test_pipeline_runs_every_step(converted, finished):
    from hqanogan_core.data.folder import scan_split

    assert finished["rc"] == 0
    out = finished["out"]
    for step in wf.STEPS:
        record = wf.step_done(out / step)
        assert record is not None, f"{step}/done.json missing"
        assert record["step"] == step and record["preset"] == "tiny"
        assert record["data"] == str(converted.resolve())
        assert not (out / step / (wf.DONE + ".tmp")).exists()
    assert wf.step_done(out / "encoder")["steps"] == wf.RUN_PRESETS["tiny"]["encoder"]["steps"]
    assert (out / "gan" / "latest.safetensors").is_file() and (out / "encoder" / "encoder.safetensors").is_file()

    test = scan_split(converted, "test")
    with open(out / "score" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(test) == wf.step_done(out / "score")["n"]
    assert len({r["image"] for r in rows}) == len(rows)
    assert {r["gt_label"] for r in rows} == {"0", "1"}

    report = json.loads((out / "benchmark" / "benchmark.json").read_text())
    assert set(report["methods"]) == set(METHODS)
    done = wf.step_done(out / "benchmark")
    assert done["methods"] == list(METHODS) and set(done["auroc"]) == set(METHODS)
    for m in METHODS:
        assert 0.0 <= report["methods"][m]["image"]["auroc"]["value"] <= 1.0


def test_second_run_skips_every_step(converted, finished, capsys):
    out = finished["out"]
    before = done_mtimes(out)
    capsys.readouterr()
    assert main(pipeline_args(converted, out)) == 0
    lines = pipeline_lines(capsys.readouterr().out)
    assert set(lines) == set(wf.STEPS)
    assert all(SKIPPED in line for line in lines.values()), lines
    assert done_mtimes(out) == before


def test_killed_encoder_is_refused_then_resumed(converted, run_copy, capsys):
    from hqanogan_core.checkpoint import load_checkpoint

    out = run_copy
    weights = out / "encoder" / "encoder.safetensors"
    finished_tensors, finished_meta = load_checkpoint(weights)
    log_before = (out / "encoder" / "log.jsonl").read_text()
    (out / "encoder" / wf.DONE).unlink()             # killed after the last checkpoint, before done.json

    capsys.readouterr()
    assert main(pipeline_args(converted, out)) == 2
    captured = capsys.readouterr()
    assert "--resume" in captured.err and str(out / "encoder") in captured.err
    assert wf.step_done(out / "encoder") is None        # nothing was overwritten

    others = {s: (out / s / wf.DONE).stat().st_mtime_ns for s in ("gan", "score", "benchmark")}
    assert main(pipeline_args(converted, out, "--resume")) == 0
    lines = pipeline_lines(capsys.readouterr().out)
    assert SKIPPED not in lines["encoder"]
    assert all(SKIPPED in lines[s] for s in ("gan", "score", "benchmark")), lines
    assert {s: (out / s / wf.DONE).stat().st_mtime_ns for s in others} == others
    record = wf.step_done(out / "encoder")
    assert record is not None and record["steps"] == wf.RUN_PRESETS["tiny"]["encoder"]["steps"]

    tensors, meta = load_checkpoint(weights)
    assert sorted(tensors) == sorted(finished_tensors)
    differ = [k for k in tensors if not torch.equal(tensors[k], finished_tensors[k])]
    assert not differ, f"the finished encoder trained again: {differ[:5]}"
    assert meta.get("step") == finished_meta.get("step")
    assert (out / "encoder" / "log.jsonl").read_text() == log_before     # no training step was logged


def test_finished_step_with_another_preset_is_refused(converted, run_copy, capsys, tmp_path):
    out = run_copy
    done = out / "gan" / wf.DONE
    record = json.loads(done.read_text())
    done.write_text(json.dumps({**record, "preset": "cpu64"}))

    capsys.readouterr()
    assert main(pipeline_args(converted, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "preset 'cpu64'" in err and "'tiny'" in err and str(out / "gan") in err
    with pytest.raises(ValueError, match="preset 'cpu64', not 'tiny'"):
        wf.ensure_gan(converted, out, "tiny", "cpu", progress=False)
    assert json.loads(done.read_text())["preset"] == "cpu64"          # left as it was

    # the same for a finished step made from other data
    other = tmp_path / "other_data"
    shutil.copytree(converted, other)
    with pytest.raises(ValueError, match="made with data"):
        wf.ensure_encoder(other, out, "tiny", "cpu", progress=False)


# ----------------------------------------------------------------------------- what the chapters print


def test_banner(converted, tmp_path):
    assert wf.banner(wf.Workspace(data=converted, default=True)) == ""
    ws = wf.workspace(own_env(converted, tmp_path / "run"))
    text = wf.banner(ws)
    assert str(converted.resolve()) in text and "`tiny`" in text and str(tmp_path / "run") in text
    assert str(converted.resolve()) in wf.describe(ws)


def test_kinds_in():
    assert wf.kinds_in(["good", "pneumonia", "nodule"]) == ["nodule", "pneumonia"]
    assert wf.kinds_in(["zeta", "effusion", "good", "nodule", "alpha", "effusion"]) == \
        ["nodule", "effusion", "alpha", "zeta"]
    assert wf.kinds_in(["good", "good"]) == []
