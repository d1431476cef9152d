"""Networks: StyleGAN2 generator/discriminator and the ADA augmentation pipe."""
from .augment import AdaController, AugmentConfig, AugmentPipe
from .stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    EqualConv2d,
    EqualLinear,
    Generator,
    GeneratorConfig,
    MappingNetwork,
    SynthesisNetwork,
    minibatch_std,
    modulated_conv2d,
    num_ws_for,
)

__all__ = [
    "AdaController", "AugmentConfig", "AugmentPipe", "Discriminator", "DiscriminatorConfig", "EqualConv2d",
    "EqualLinear", "Generator", "GeneratorConfig", "MappingNetwork", "SynthesisNetwork", "minibatch_std",
    "modulated_conv2d", "num_ws_for",
]
