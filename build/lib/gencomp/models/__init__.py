"""Generative models: the GAN with its inversion encoder (approach 1), the VAE-GAN with its latent prior
(approach 2), and the inference weights file both are stored in."""

from gencomp.models.gan import Discriminator, Generator, InversionEncoder
from gencomp.models.prior import GaussianChannelPrior
from gencomp.models.store import LoadedModel, ModelFileError, load_model, save_gan, save_model, save_vaegan
from gencomp.models.vaegan import VAEGAN, PatchDiscriminator

__all__ = [
    "VAEGAN",
    "Discriminator",
    "GaussianChannelPrior",
    "Generator",
    "InversionEncoder",
    "LoadedModel",
    "ModelFileError",
    "PatchDiscriminator",
    "load_model",
    "save_gan",
    "save_model",
    "save_vaegan",
]
