"""Published image AUROC (%) on real radiographs and OCT, quoted with their sources (not computed here).

We cannot run these datasets on the machines the book is built on; these are what a reader should expect
when they do (see "Using your own data"). Each entry: (method, dataset) -> AUROC in percent, per source.
Different sources use different splits and preprocessing, so numbers are only comparable within a source.
"""
from __future__ import annotations

SOURCES = {
    "bmad": {"cite": "bao2023bmad", "short": "BMAD",
             "text": "BMAD benchmark (Bao et al. 2023, arXiv 2306.11876), Table 3"},
    "anatpaste": {"cite": "sato2022anatpaste", "short": "AnatPaste",
                  "text": "AnatPaste (Sato et al. 2022, arXiv 2205.04282)"},
}

# source -> dataset -> method -> AUROC %
PUBLISHED_AUROC = {
    "bmad": {
        "RSNA": {"fanogan": 55.1, "ganomaly": 62.9, "deepsvdd": 64.7, "cutpaste": 82.4, "padim": 75.9,
                 "patchcore": 75.2, "cs-flow": 83.2},
        "OCT2017": {"fanogan": 72.8, "ganomaly": 68.6, "deepsvdd": 79.0, "cutpaste": 96.8, "padim": 91.5,
                    "patchcore": 98.6, "cs-flow": 98.8},
    },
    "anatpaste": {
        "ZhangLab": {"anatpaste": 92.1},
        "CheXpert": {"anatpaste": 78.7},
        "RSNA": {"anatpaste": 81.9},
    },
}


def published_rows() -> list[dict]:
    """One row per (source, dataset, method), in the order above."""
    rows = []
    for source, datasets in PUBLISHED_AUROC.items():
        for dataset, methods in datasets.items():
            for method, value in methods.items():
                rows.append({"source": source, "dataset": dataset, "method": method, "auroc": value})
    return rows


# StyleGAN2-ADA training speed, official README (NVlabs/stylegan2-ada-pytorch), one Tesla V100, 'auto'
# config: resolution -> (low, high) seconds per kimg, and the GPU memory it quotes where it quotes one.
STYLEGAN2_ADA_V100 = {
    "source": "NVlabs/stylegan2-ada-pytorch README, 'Expected training time' (1 x V100, cfg auto)",
    "s_per_kimg": {128: (12.8, 13.7), 256: (21.6, 24.2), 512: (74.0, 74.0), 1024: (158.0, 158.0)},
    "gpu_mem_gb": {256: 5.0},
    "reasonable_kimg": 5000,     # "reasonable" results around 5000 kimg at full scale
}
