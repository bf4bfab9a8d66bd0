"""Tiny randomly initialised generative models and a synthetic photo, shared by the codec test modules (the
fixtures ``gan_path`` and ``vaegan_path`` in conftest.py write them once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, save_gan, save_vaegan

LATENT, TILE = 8, 8  # the tiny GAN's latent size and tile side


def write_tiny_gan(path: Path) -> Path:
    torch.manual_seed(0)
    save_gan(path, generator=Generator(latent_dim=LATENT, tile=TILE, width=8),
             encoder=InversionEncoder(latent_dim=LATENT, tile=TILE, width=8))
    return path


def write_tiny_vaegan(path: Path) -> Path:
    """Four latent channels at 1/4 resolution, with a fitted channel prior of known means and scales."""
    torch.manual_seed(1)
    prior = GaussianChannelPrior(4)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.5, -0.5, 0.0, 0.0]))
        prior.log_scale.copy_(torch.log(torch.tensor([3.0, 2.0, 1.0, 0.5])))
    save_vaegan(path, model=VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4), prior=prior,
                quant_step=0.25, prior_fitted=True)
    return path


def synthetic_photo(width: int, height: int) -> Image.Image:
    """Smooth colour waves: deterministic, with structure at several scales."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([np.sin(x / 3.0), np.cos(y / 4.0), np.sin((x + y) / 5.0)], axis=-1) * 100 + 128
    return Image.fromarray(rgb.astype(np.uint8), "RGB")
