"""Every detector the benchmark runs, behind one interface (`base.Method`), by command-line name.

Adding a method is one module here and one line below.
"""
from .ae import Autoencoder
from .anogan import AnoGAN
from .cutpaste import AnatPaste, CutPaste
from .deep_svdd import DeepSAD, DeepSVDD
from .fanogan import FAnoGAN
from .floors import MeanIntensity, PCAReconstruction, PixelIsolationForest
from .ganomaly import GANomaly
from .gaussian_ad import GaussianAD
from .hqanogan import HQAnoGAN, HQAnoGANRepair
from .padim import PaDiM
from .patchcore import PatchCore
from .supervised import SupervisedCeiling
from .vae import VariationalAutoencoder

METHODS = {
    "mean": MeanIntensity,
    "iforest": PixelIsolationForest,
    "pca": PCAReconstruction,
    "ae": Autoencoder,
    "vae": VariationalAutoencoder,
    "anogan": AnoGAN,
    "fanogan": FAnoGAN,
    "ganomaly": GANomaly,
    "deepsvdd": DeepSVDD,
    "deepsad": DeepSAD,
    "cutpaste": CutPaste,
    "anatpaste": AnatPaste,
    "gaussian_ad": GaussianAD,
    "padim": PaDiM,
    "patchcore": PatchCore,
    "hqanogan": HQAnoGAN,
    "hqanogan_repair": HQAnoGANRepair,      # the same score; restorations and maps from latent repair
    "supervised": SupervisedCeiling,        # the ceiling: trained WITH labels on other phantom seeds
}

# how the book groups them (data, not code): what each family learns from the normals
FAMILIES = {
    "floors": ["mean", "iforest", "pca"],
    "reconstruction": ["ae", "vae"],
    "GAN-based": ["anogan", "fanogan", "ganomaly", "hqanogan"],
    "one-class": ["deepsvdd", "deepsad"],
    "self-supervised": ["cutpaste", "anatpaste"],
    "pretrained features": ["gaussian_ad", "padim", "patchcore"],
}

# what `--methods all` runs: every anomaly detector (the supervised ceiling trains on labelled phantoms
# of its own and is run by name, on phantom data only)
DETECTORS = [m for m in METHODS if m != "supervised"]

__all__ = ["METHODS", "FAMILIES", "DETECTORS"]
