"""Validation-split choices for the pretrained-feature baselines: backbone (AlexNet or VGG-16, the two
ImageNet networks available offline), input size and the number of training normals the statistics are fitted on.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/feature_choices.py [--data data/cache/phantom64] [--out FILE]

Fits each (method, backbone, n_fit) on DATA/train/good and prints the AUROC [95 % CI] on DATA/valid (never
the test split), with fit and score times. The defaults in methods/{gaussian_ad,padim,patchcore}.py are
the choices this prints; the closing notes quote its output.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from hqanogan_core import metrics
from hqanogan_core.data.default import phantom_dataset
from hqanogan_core.data.splits import load_split
from hqanogan_core.methods import METHODS

# (method, backbone, n_fit, input size): the default first, then one change at a time
GRID = [(m, "alex", n, size) for m, n in (("gaussian_ad", 1000), ("padim", 1000), ("patchcore", 500))
        for size in (64, 128)]
EXTRA = [("gaussian_ad", "vgg", 1000, 64), ("padim", "vgg", 1000, 64), ("patchcore", "vgg", 500, 64),
         ("gaussian_ad", "alex", 4000, 64), ("padim", "alex", 4000, 64), ("patchcore", "alex", 1000, 64)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=None, help="write the rows as JSON here too")
    parser.add_argument("--extra", action="store_true", help="also VGG-16 and more fitted normals (slower)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    data = args.data or phantom_dataset()
    train, valid = load_split(data, "train"), load_split(data, "valid")
    rows = []
    for name, backbone, n_fit, size in GRID + (EXTRA if args.extra else []):
        method = METHODS[name](backbone=backbone, n_fit=n_fit, input_size=size)
        t0 = time.perf_counter()
        method.fit(train.images)
        t1 = time.perf_counter()
        scores = method.score(valid.images)["pred_score"]
        t2 = time.perf_counter()
        value, lo, hi = metrics.bootstrap_ci(metrics.auroc, scores, valid.labels, n_boot=1000, seed=0)
        row = {"method": name, "backbone": backbone, "n_fit": n_fit, "input_size": size, "valid_auroc": value,
               "ci95": [lo, hi], "fit_s": round(t1 - t0, 1),
               "score_ms_per_image": round(1000 * (t2 - t1) / len(valid), 1)}
        rows.append(row)
        print(f"{name:12s} {backbone:5s} n_fit {n_fit:5d} input {size:4d}  "
              f"valid AUROC {value:.3f} [{lo:.3f}, {hi:.3f}]  "
              f"fit {row['fit_s']:6.1f} s  score {row['score_ms_per_image']:5.1f} ms/image", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
