"""Where things live on disk: the repository, the shipped data and the caches."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """`data/` of the repository (shipped checkpoints, recipes)."""
    return REPO_ROOT / "data"


def cache_dir() -> Path:
    """Git-ignored cache for generated datasets and runs; override with $HQANOGAN_CACHE."""
    path = Path(os.environ.get("HQANOGAN_CACHE", REPO_ROOT / "data" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path
