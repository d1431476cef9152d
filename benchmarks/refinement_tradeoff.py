"""How long to refine, and whether to pull towards normal: PSNR of restored normals against the findings'
contrast, on the validation split.

    python benchmarks/refinement_tradeoff.py [--data DIR] [--run ENC] [--setting STEPS,LR,PRIOR ...]

For each setting, the encoder-initialised refinement (`project.refine`) of every validation image, then
`score_study.restoration_quality` of it: the mean PSNR of the restored normals, and on abnormal images the
mean residual inside the finding's mask over the mean residual outside it (the contrast that
`score_study.restoration_keeps_findings` compares with G(E(x))'s). PRIOR > 0 adds the normal-latent prior
(per-slot Mahalanobis distance to the W+ Gaussians fitted on the training normals' codes, weight PRIOR).
Each line also has the validation AUROC of the default score's one term, the maximum of the residual map
smoothed by its sigma (`valid_auroc_residual_max`), so that two model pairs (--run: an encoder folder
and the generator it names) can be compared on the validation split before anything is re-measured.
The score study varies the number of steps only; this script is how the prior was tried and left out.
About two minutes per setting on two CPU cores at 64 px. Prints one JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from hqanogan_core import metrics
from hqanogan_core.data.default import phantom_dataset
from hqanogan_core.methods.hqanogan import DEFAULT_SCORE
from hqanogan_core.data.splits import load_split, to_model_input
from hqanogan_core.pipeline import load_pipeline
from hqanogan_core.project import refine
from hqanogan_core.recon import encode_images
from hqanogan_core.score_study import restoration_quality
from hqanogan_core.scores import HQAnoGANScorer
from hqanogan_core.terms import Evidence, ScoreConfig, fit_latent_gaussians, residual_map

DEFAULT_SETTINGS = ("30,0.01,0", "40,0.01,0", "50,0.01,0", "50,0.01,0.0002", "50,0.01,0.001")


def residual_auroc(x: torch.Tensor, rec: torch.Tensor, split) -> float:
    """Validation AUROC of max over pixels of the smoothed residual |x - rec| (DEFAULT_SCORE's map sigma)."""
    maps = residual_map(x[:, 0].numpy(), rec.clamp(-1, 1)[:, 0].numpy(), DEFAULT_SCORE.map_sigma)   # [N, R, R]
    return metrics.auroc(maps.reshape(len(maps), -1).max(axis=1), split.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="MVTec-layout folder with masks (default: the book's phantom)")
    ap.add_argument("--setting", nargs="+", default=list(DEFAULT_SETTINGS), help="STEPS,LR,PRIOR")
    ap.add_argument("--run", default=None, help="encoder folder (default: the shipped data/pretrained/encoder64)")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = args.data or phantom_dataset()
    pipe = load_pipeline(args.run)
    R = pipe.G.resolution
    valid = load_split(data, "valid")
    x = to_model_input(valid.images, R)                                              # [N, 1, R, R]
    ws, rec = encode_images(pipe.G, pipe.E, x)
    scorer = HQAnoGANScorer(pipe.G, pipe.E, None, None, config=ScoreConfig())
    plain = restoration_quality(Evidence(scorer, x, ws, rec.clamp(-1, 1)), valid, 0.0)
    print(json.dumps({"setting": "G(E(x))", **plain, "valid_auroc_residual_max": residual_auroc(x, rec, valid)}))
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
        print(json.dumps({"setting": setting, **q, "valid_auroc_residual_max": residual_auroc(x, refined, valid)}),
              flush=True)


if __name__ == "__main__":
    main()
