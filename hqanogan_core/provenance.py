"""Where a shipped result came from: the code revision, file digests, paths that travel with the repository."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import torch

from hqanogan_core.paths import REPO_ROOT


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_revision(repo: Path = REPO_ROOT) -> dict:
    """`git rev-parse HEAD` of the repository and whether tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as err:
        return {"revision": None, "dirty": None, "error": str(err)}
    if head.returncode != 0:
        return {"revision": None, "dirty": None, "error": head.stderr.strip()}
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return {"revision": head.stdout.strip(), "dirty": bool(changed), "changed_files": changed[:50]}


def portable_path(path: str | Path, repo: Path = REPO_ROOT) -> str:
    """`path` relative to the repository when it lies inside it (manifests must not record this machine's
    absolute paths); otherwise only its last two components, which say what it was without where."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(repo).resolve()).as_posix()
    except ValueError:
        return os.path.join("...", *path.parts[-2:])


def tensor_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names, shapes, bytes): which weights the results belong to."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- image signatures

# The phantom is rendered with float math whose last bits depend on the CPU (glibc picks FMA / AVX variants
# of exp, sin, ... at run time), so the same dataset re-rendered on another machine can differ by one grey
# level in a few pixels: an exact sha256 of the pixels would then reject shipped weights and results that
# are, for every purpose, of these images. Signatures compare what identifies a set of images instead.
SIGNATURE_TOLERANCE = 1e-4     # per-image mean, [0, 1] units: one grey level on one pixel of 64x64 is 1e-6


def images_signature(*arrays) -> str:
    """Per-image mean of each array [N, ...] in turn, as one line of numbers (7 decimals): the order, number
    and content of a set of images, robust to last-bit rendering differences."""
    means = [np.asarray(a, dtype=np.float64).reshape(len(a), -1).mean(axis=1) for a in arrays if a is not None]
    return " ".join(f"{v:.7f}" for v in np.concatenate(means)) if means else ""


def same_signature(a, b, tol: float = SIGNATURE_TOLERANCE) -> bool:
    """Two signatures describe the same images: as many images, every per-image mean within `tol`."""
    if a is None or b is None:
        return a is None and b is None
    x, y = np.array(a.split(), dtype=np.float64), np.array(b.split(), dtype=np.float64)
    return x.shape == y.shape and bool(np.max(np.abs(x - y), initial=0.0) <= tol)


def keys_match(stored: dict, wanted: dict) -> bool:
    """A stored result's key equals the wanted one: fields named *_signature by `same_signature`, the rest exactly."""
    if set(stored) != set(wanted):
        return False
    return all(same_signature(stored[k], wanted[k]) if k.endswith("_signature") else stored[k] == wanted[k]
               for k in wanted)
