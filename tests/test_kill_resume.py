"""A training process killed with SIGKILL and started again with --resume ends bit-identical to one that
was never interrupted (CPU, one thread, deterministic algorithms), for `train-gan` and `train-encoder`.

Real subprocesses, the real CLI: each run is `python -m hqanogan_core ...` with
`torch.use_deterministic_algorithms(True)` switched on first (see `_command`). The run to be killed is
polled until its first checkpoint exists and its log has a line from a later step, then SIGKILLed. The
checkpoint it left must load (checkpoints are written atomically), and resuming it to the end must give
the same tensors (every one: weights, EMA, optimiser moments, ADA p, RNG state) and the same log as the
straight run. No timing is asserted; if a run ever finishes before the kill lands, it is redone longer.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

# tiny 32 px StyleGAN2 (as conftest.TINY_GAN), checkpoint every 2 steps (batch 4 -> 0.008 kimg), log every step;
# augment_p 0.3 so that augmentation draws random numbers from the first step on
GAN_SET = dict(channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4, mbstd_group=4, r1_interval=4,
               pl_interval=2, augment_p=0.3, swd_images=8, log_kimg=0.004, snapshot_kimg=0.008, swd_kimg=0.016)
GAN_STEPS = 12
# tiny pSp encoder (as conftest.TINY_ENC), checkpoint every 2 steps
ENC_SET = dict(width=8, blocks=[1, 1, 1, 1], batch=4, log_every=1, snapshot_every=2, perceptual="stlpips")
ENC_STEPS = 8
RUN_LENGTHS = (1, 4)           # the run is redone this many times longer if it ever ends before the kill
TIMING = ("s_per_kimg", "s_per_step", "peak_mem_mb", "device")  # log fields that measure time, not training


def _env(tmp: Path) -> dict:
    """One thread, CPU only, caches in tmp, a fixed hash seed."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0",
                CUBLAS_WORKSPACE_CONFIG=":4096:8", HQANOGAN_CACHE=str(tmp / "cache"))


def _command(*args) -> list[str]:
    """`python -m hqanogan_core ARGS` with deterministic algorithms on (torch has no environment switch)."""
    launcher = ("import runpy, sys, torch; torch.use_deterministic_algorithms(True); "
                "runpy.run_module('hqanogan_core', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", launcher, *map(str, args)]


def _settings(values: dict) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _gan_args(data, out, steps: int) -> list[str]:
    kimg = steps * GAN_SET["batch"] / 1000
    return ["train-gan", "--data", data, "--out", out, "--preset", "cpu32", "--kimg", f"{kimg:g}", "--device", "cpu",
            "--seed", "3", "--no-progress", *_settings(GAN_SET)]


def _enc_args(gan, data, out, steps: int) -> list[str]:
    return ["train-encoder", "--run", gan, "--data", data, "--out", out, "--steps", steps, "--device", "cpu",
            "--seed", "5", "--no-progress", *_settings(ENC_SET)]


def _start(args, tmp: Path, log_name: str) -> subprocess.Popen:
    """Launch a run in the background; its output goes to TMP/LOG_NAME.txt."""
    with open(tmp / f"{log_name}.txt", "w") as out:          # the child keeps its own copy of the descriptor
        return subprocess.Popen(_command(*args), cwd=REPO_ROOT, env=_env(tmp), stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, tmp: Path, log_name: str, limit: float = 120) -> None:
    """Wait for a run that must succeed; on failure show its output."""
    rc = proc.wait(timeout=limit)
    assert rc == 0, f"{log_name} exited {rc}:\n" + (tmp / f"{log_name}.txt").read_text()[-3000:]


def _log_lines(path: Path) -> list[dict]:
    """The complete lines of a JSONL log (one being written may end in a partial line: left out)."""
    if not path.exists():
        return []
    return [json.loads(s) for s in path.read_text().split("\n")[:-1] if s.strip()]


def _logged_step(line: dict) -> int:
    """The step a log line was written at (train-encoder logs it; train-gan logs kimg)."""
    return line["step"] if "step" in line else round(line["kimg"] * 1000) // GAN_SET["batch"]


def _kill_between_checkpoints(proc: subprocess.Popen, checkpoint: Path, log: Path, limit: float = 120) -> bool:
    """Poll until `checkpoint` exists and `log` has a line from a later step (work the kill will throw
    away), then SIGKILL `proc`. True when the kill landed in a live process, False when the run had ended."""
    deadline = time.monotonic() + limit                       # a bound for a hung run, not a timing assertion
    while proc.poll() is None:
        steps = [_logged_step(line) for line in _log_lines(log) if "event" not in line]
        if checkpoint.exists() and steps and max(steps) > ckpt.read_meta(checkpoint)["step"]:
            os.kill(proc.pid, signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint at {checkpoint} after {limit} s")
        time.sleep(0.02)
    rc = proc.wait(timeout=30)
    assert rc in (0, -signal.SIGKILL), f"the run to be killed failed on its own (exit {rc})"
    return rc == -signal.SIGKILL


def _killed_and_straight(tmp: Path, name: str, make_args, checkpoint_name: str, steps: int):
    """Start the straight run and the run to be killed side by side; kill the latter after its first checkpoint,
    once it has logged a step past it.
    Returns (straight folder, killed folder, steps, meta of the checkpoint the kill left)."""
    for factor in RUN_LENGTHS:
        n = steps * factor
        straight, killed = tmp / f"{name}_straight_{n}", tmp / f"{name}_killed_{n}"
        p_straight = _start(make_args(straight, n), tmp, f"{name}_straight_{n}")
        p_killed = _start(make_args(killed, n), tmp, f"{name}_killed_{n}")
        landed = _kill_between_checkpoints(p_killed, killed / checkpoint_name, killed / "log.jsonl")
        meta = ckpt.read_meta(killed / checkpoint_name) if landed else {}
        if landed and meta["step"] < n:                      # killed mid-run: the case under test
            _finish(p_straight, tmp, f"{name}_straight_{n}")
            return straight, killed, n, meta
        p_straight.kill()                                    # it ended too soon: redo both, longer
        p_straight.wait()
    pytest.fail(f"{name}: the run always ended before it could be killed ({RUN_LENGTHS[-1] * steps} steps)")


def _check_checkpoint_is_whole(folder: Path, name: str) -> None:
    """The checkpoint a SIGKILL left loads completely; anything else left over is only a temp file."""
    tensors, meta = ckpt.load_checkpoint(folder / name)
    assert tensors and meta["step"] >= 1
    stray = [p.name for p in folder.iterdir() if p.name.startswith(".") and not p.name.endswith(".tmp")]
    assert not stray, stray


def _assert_same_checkpoints(a: Path, b: Path) -> int:
    """Every tensor of two checkpoints torch.equal, and the same counters; returns the number of tensors."""
    ta, ma = ckpt.load_checkpoint(a)
    tb, mb = ckpt.load_checkpoint(b)
    assert sorted(ta) == sorted(tb)
    differ = [k for k in ta if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
    assert not differ, f"{len(differ)} of {len(ta)} tensors differ after kill + resume, e.g. {differ[:5]}"
    for key in ("step", "cur_nimg", "sampler", "rng", "ada", "opt", "optG", "optD", "config"):
        assert ma.get(key) == mb.get(key), key
    return len(ta)


def _assert_same_logs(a: Path, b: Path) -> None:
    """The resumed log reads as the straight one: same lines, same values (timings aside)."""
    def strip(lines):
        return [{k: v for k, v in line.items() if k not in TIMING} for line in lines if "event" not in line]

    la, lb = strip(_log_lines(a)), strip(_log_lines(b))
    assert la and la == lb


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 16-image 32 px phantom (train/good only) and an untrained tiny GAN run for the encoder to invert."""
    from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset
    from hqanogan_core.presets import get_preset
    from hqanogan_core.train.gan import GanTrainer, load_images

    tmp = tmp_path_factory.mktemp("kill")
    data = tmp / "phantom32"
    write_phantom_dataset(data, n_train=16, n_test=0, n_valid=0, seed=1, config=PhantomConfig(size=32), workers=1,
                          progress=False)
    cfg = get_preset("cpu32", **GAN_SET, device="cpu")
    trainer = GanTrainer(cfg, load_images(data, 32), torch.device("cpu"))
    trainer.save(tmp / "gan" / "latest.safetensors")
    return {"tmp": tmp, "data": data, "gan": tmp / "gan"}


def test_train_gan_killed_then_resumed_equals_straight(work):
    tmp, data = work["tmp"], work["data"]
    straight, killed, n, meta = _killed_and_straight(
        tmp, "gan", lambda out, n: _gan_args(data, out, n), "latest.safetensors", GAN_STEPS)
    _check_checkpoint_is_whole(killed, "latest.safetensors")
    assert max(_logged_step(line) for line in _log_lines(killed / "log.jsonl")) > meta["step"]  # work lost
    resumed = _start(_gan_args(data, killed, n) + ["--resume"], tmp, "gan_resumed")
    _finish(resumed, tmp, "gan_resumed")
    assert "resumed from" in (tmp / "gan_resumed.txt").read_text()
    assert ckpt.read_meta(killed / "latest.safetensors")["step"] == n > meta["step"]
    assert _assert_same_checkpoints(straight / "latest.safetensors", killed / "latest.safetensors") > 100
    _assert_same_logs(straight / "log.jsonl", killed / "log.jsonl")
    assert not list(killed.glob(".*.tmp"))                   # the resumed run cleared what the kill left


def test_train_encoder_killed_then_resumed_equals_straight(work):
    tmp, data, gan = work["tmp"], work["data"], work["gan"]
    straight, killed, n, meta = _killed_and_straight(
        tmp, "enc", lambda out, n: _enc_args(gan, data, out, n), "encoder.safetensors", ENC_STEPS)
    _check_checkpoint_is_whole(killed, "encoder.safetensors")
    assert max(_logged_step(line) for line in _log_lines(killed / "log.jsonl") if "event" not in line) > meta["step"]
    resumed = _start(_enc_args(gan, data, killed, n) + ["--resume"], tmp, "enc_resumed")
    _finish(resumed, tmp, "enc_resumed")
    assert "resumed train-encoder" in (tmp / "enc_resumed.txt").read_text()
    assert ckpt.read_meta(killed / "encoder.safetensors")["step"] == n > meta["step"]
    assert _assert_same_checkpoints(straight / "encoder.safetensors", killed / "encoder.safetensors") > 10
    _assert_same_logs(straight / "log.jsonl", killed / "log.jsonl")
    assert not list(killed.glob(".*.tmp"))
