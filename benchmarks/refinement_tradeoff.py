"""How long to refine, and whether to pull towards normal: PSNR of restored normals against the findings'
contrast, on the validation split.

    python benchmarks/refinement_tradeoff.py [--data DIR] [--setting STEPS,LR,PRIOR ...]

For each setting, the encoder-initialised refinement (`project.refine`) of every validation image, then
`score_study.restoration_quality` of it: the mean PSNR of the restored normals, and on abnormal images the
mean residual inside the finding's mask over the mean residual outside it (the contrast that
`score_study.restoration_keeps_findings` compares with G(E(x))'s). PRIOR > 0 adds the normal-latent prior
(per-slot Mahalanobis distance to the W+ Gaussians fitted on the training normals' codes, weight PRIOR).
The score study varies the number of steps only; this script is how the prior was tried and left out.
About two minutes per setting on two CPU cores at 64 px. Prints one JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from hqanogan_core.data.default import phantom_dataset
from hqanogan_core.data.splits import load_split, to_model_input
from hqanogan_core.pipeline import load_pipeline
from hqanogan_core.project import refine
from hqanogan_core.recon import encode_images
from hqanogan_core.score_study import restoration_quality
from hqanogan_core.scores import HQAnoGANScorer
from hqanogan_core.terms import Evidence, ScoreConfig, fit_latent_gaussians

DEFAULT_SETTINGS = ("30,0.01,0", "40,0.01,0", "50,0.01,0", "50,0.01,0.0002", "50,0.01,0.001")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="MVTec-layout folder with masks (default: the book's phantom)")
    ap.add_argument("--setting", nargs="+", default=list(DEFAULT_SETTINGS), help="STEPS,LR,PRIOR")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = args.data or phantom_dataset()
    pipe = load_pipeline()
    R = pipe.G.resolution
    valid = load_split(data, "valid")
    x = to_model_input(valid.images, R)                                              # [N, 1, R, R]
    ws, rec = encode_images(pipe.G, pipe.E, x)
    scorer = HQAnoGANScorer(pipe.G, pipe.E, None, None, config=ScoreConfig())
    plain = restoration_quality(Evidence(scorer, x, ws, rec.clamp(-1, 1)), valid, 0.0)
    print(json.dumps({"setting": "G(E(x))", **plain}))
    gaussians = None
    for setting in args.setting:
        steps, lr, prior = (float(v) for v in setting.split(","))
        if prior > 0 and gaussians is None:
            train_ws, _ = encode_images(pipe.G, pipe.E, to_model_input(load_split(data, "train").images, R))
            gaussians = fit_latent_gaussians(train_ws.numpy())
        t0 = time.perf_counter()
        _, refined = refine(pipe.G, x, ws, steps=int(steps), lr=lr, prior=gaussians if prior > 0 else None,
                                     lambda_prior=prior)
        scorer.config = ScoreConfig(refine_steps=int(steps), refine_lr=lr, refine_prior=prior)
        q = restoration_quality(Evidence(scorer, x, ws, refined), valid, time.perf_counter() - t0)
        print(json.dumps({"setting": setting, **q}), flush=True)


if __name__ == "__main__":
    main()
