"""Training: StyleGAN2-ADA loop, its presets and safe checkpoints.

Import `hqanogan_core.train.gan` for the loop; `hqanogan_core.checkpoint` only needs the nets.
"""
from ..checkpoint import CheckpointMismatchError, load_checkpoint, load_discriminator, load_generator, save_checkpoint
from ..presets import PRESETS, GanTrainConfig, get_preset

__all__ = [
    "CheckpointMismatchError", "GanTrainConfig", "PRESETS", "get_preset", "load_checkpoint", "load_discriminator",
    "load_generator", "save_checkpoint",
]
