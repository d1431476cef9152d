"""The training loop every trainer shares: steps, a JSONL log, tqdm, atomic resumable checkpoints.

A trainer is anything with
    step_idx            steps done so far
    step() -> dict      one iteration; returns floats to log
    save(path)          atomic safetensors checkpoint of everything needed to continue bit-exactly
    load(path)          the reverse

`run_training` logs the mean of each value every `log_every` steps (plus `s_per_step`, the time inside
`step()` only), checkpoints every `snapshot_every` steps and at the end, and with `resume=True`
continues from OUT/<checkpoint name> where a killed run stopped.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np


def append_log(path: Path, line: dict) -> None:
    """One JSON line; non-finite floats become null so every line stays valid JSON."""
    line = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in line.items()}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


def read_log(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


def step_seconds(lines: list[dict]) -> float:
    """Seconds inside `step()` over a whole (possibly resumed) run: sum of s_per_step x steps per line."""
    total, prev = 0.0, 0
    for line in lines:
        step, sps = line.get("step"), line.get("s_per_step")
        if step is None:
            continue
        if sps is not None and step > prev:
            total += sps * (step - prev)
        prev = step
    return total


def run_training(trainer, out_dir, steps: int, *, checkpoint_name: str, log_every: int, snapshot_every: int,
                 resume: bool = False, progress: bool = True, desc: str = "train", start_info: dict | None = None,
                 on_snapshot: Callable[[object, Path], None] | None = None, postfix=("loss",)) -> dict:
    """Train `trainer` up to `steps` steps in `out_dir`; returns paths, steps, seconds and the last log line."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    latest, log_path = out_dir / checkpoint_name, out_dir / "log.jsonl"
    if resume and latest.exists():
        trainer.load(latest)
        print(f"resumed {desc} from {latest} at step {trainer.step_idx}")
        keep = [ln for ln in read_log(log_path) if ln.get("step", 0) <= trainer.step_idx]   # drop lines past the
        log_path.write_text("".join(json.dumps(ln) + "\n" for ln in keep))                # checkpoint: redone now
    else:
        if resume:
            print(f"no checkpoint at {latest}; starting from scratch")
        log_path.write_text(json.dumps({"event": "start", **(start_info or {})}) + "\n")
    t0 = time.time()
    acc: dict[str, list] = {}
    last: dict = {}
    tick_seconds, tick_steps = 0.0, 0
    bar = tqdm(total=steps, initial=min(trainer.step_idx, steps), disable=not progress, desc=desc)
    while trainer.step_idx < steps:
        t_step = time.perf_counter()
        stats = trainer.step()
        tick_seconds += time.perf_counter() - t_step
        tick_steps += 1
        for k, v in stats.items():
            acc.setdefault(k, []).append(v)
        bar.update(1)
        done = trainer.step_idx >= steps
        if trainer.step_idx % log_every == 0 or done:
            last = {"step": trainer.step_idx, **{k: float(np.mean(v)) for k, v in acc.items()},
                    "s_per_step": tick_seconds / max(tick_steps, 1)}
            append_log(log_path, last)
            bar.set_postfix({k: f"{last[k]:.3f}" for k in postfix if k in last})
            acc, tick_seconds, tick_steps = {}, 0.0, 0
        if trainer.step_idx % snapshot_every == 0 or done:
            if on_snapshot is not None:
                on_snapshot(trainer, out_dir)
            trainer.save(latest)
    bar.close()
    if not latest.exists():
        trainer.save(latest)
    return {"out_dir": str(out_dir), "checkpoint": str(latest), "log": str(log_path), "steps": trainer.step_idx,
            "seconds": time.time() - t0, "last": last, "trainer": trainer}
