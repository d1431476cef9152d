"""Where a shipped result came from: the code revision, file digests, paths that travel with the repository."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

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
