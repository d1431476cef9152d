"""Every detector the benchmark runs, behind one interface (`base.Method`), by command-line name.

Adding a method is one module here and one line below.
"""
from .ae import Autoencoder
from .anogan import AnoGAN
from .fanogan import FAnoGAN
from .floors import MeanIntensity, PCAReconstruction, PixelIsolationForest
from .ganomaly import GANomaly
from .hqanogan import HQAnoGAN
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
    "hqanogan": HQAnoGAN,
}

__all__ = ["METHODS"]
