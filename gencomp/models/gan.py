"""Approach 1 of the poster: a GAN trained on the image domain, plus an encoder that inverts it.

An image tile is compressed by searching a latent ``z`` with ``G(z) ~ tile``; the :class:`InversionEncoder`
gives that search a starting point close to the answer. Defaults follow the poster: 64x64 tiles and a
100-dimensional latent (the DCGAN size the poster used), so results compare with its Table 1.

Design choices, each for a reason:
- the generator normalises with BatchNorm (``norm="batch"``, DCGAN's choice, what the presets train). The
  first design used pixel normalisation (ProGAN) to keep ``G(z)`` independent of the batch, but those
  generators collapsed to a single output on our photo corpus, with or without TTUR and minibatch-stddev;
  BatchNorm, which standardises each channel ACROSS the batch, keeps samples apart. Independence is kept
  where it matters: the codec and the EMA copy run in eval mode, on running statistics, so ``G(z)`` of one
  tile does not depend on the others (tested). ``norm="pixel"`` remains for model files made before;
- the discriminator uses spectral normalisation, the hinge loss (SNGAN / BigGAN) and a minibatch-stddev
  map (ProGAN), and learns 4x faster than the generator (TTUR);
- the generator upsamples with nearest-neighbour + 3x3 conv rather than transposed convs, avoiding
  checkerboard artefacts that would cost the inversion search PSNR.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DEFAULT_LATENT_DIM = 100
DEFAULT_TILE = 64
MBSTD_GROUP = 4  # samples per minibatch-stddev group in the discriminator
GENERATOR_NORMS = ("batch", "pixel")


def _num_stages(tile: int) -> int:
    """How many 2x stages link a 4x4 feature map with a ``tile`` x ``tile`` image."""
    stages = math.log2(tile / 4) if tile >= 8 else -1
    if stages < 1 or stages != int(stages):
        raise ValueError(f"tile must be a power of two >= 8, got {tile}")
    return int(stages)


def _stage_channels(width: int, stages: int) -> list[int]:
    """Channels from the 4x4 end to the full-resolution end: wide at low resolution, capped at 8 * width."""
    return [width * min(8, 2 ** (stages - i)) for i in range(stages + 1)]


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (ProGAN); per-sample, so batch-independent."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """``z`` of shape (N, latent_dim) -> images (N, 3, tile, tile) in [-1, 1]."""

    def __init__(self, latent_dim: int = DEFAULT_LATENT_DIM, tile: int = DEFAULT_TILE, width: int = 64,
                 norm: str = "pixel"):
        super().__init__()
        if norm not in GENERATOR_NORMS:
            raise ValueError(f"norm must be one of {GENERATOR_NORMS}, got {norm!r}")
        self.latent_dim = int(latent_dim)
        self.tile = int(tile)
        self.width = int(width)
        self.norm = norm
        stages = _num_stages(self.tile)
        chans = _stage_channels(self.width, stages)

        def normalise(channels: int) -> nn.Module:
            return PixelNorm() if norm == "pixel" else nn.BatchNorm2d(channels)

        self.project = nn.Linear(self.latent_dim, chans[0] * 16)
        blocks = []
        for c_in, c_out in itertools.pairwise(chans):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.LeakyReLU(0.2),
                normalise(c_out),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.LeakyReLU(0.2),
                normalise(c_out),
            ]
        self.body = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)
        self.head_norm = normalise(chans[0])

    @property
    def config(self) -> dict:
        return {"latent_dim": self.latent_dim, "tile": self.tile, "width": self.width, "norm": self.norm}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected z of shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        x = self.project(z).view(z.shape[0], -1, 4, 4)
        x = self.head_norm(F.leaky_relu(x, 0.2))
        return torch.tanh(self.to_rgb(self.body(x)))


class Discriminator(nn.Module):
    """Images (N, 3, tile, tile) in [-1, 1] -> one realness score per image (N,), spectrally normalised."""

    def __init__(self, tile: int = DEFAULT_TILE, width: int = 64):
        super().__init__()
        self.tile = int(tile)
        self.width = int(width)
        stages = _num_stages(self.tile)
        chans = list(reversed(_stage_channels(self.width, stages)))
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, chans[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [
                spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1)),
                nn.LeakyReLU(0.2),
            ]
        self.body = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear((chans[-1] + 1) * 16, 1))  # +1: the minibatch-stddev map

    @property
    def config(self) -> dict:
        return {"tile": self.tile, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(minibatch_stddev(self.body(x)).flatten(1)).squeeze(1)


def minibatch_stddev(features: torch.Tensor, group: int = MBSTD_GROUP) -> torch.Tensor:
    """Append one map holding how much the samples of each group differ (ProGAN, Karras et al. 2018).

    A generator that ignores z makes identical samples, which this map exposes to the discriminator at once.
    On its own it did not stop our PixelNorm generators collapsing; the BatchNorm generator did (see the note
    in train/presets.py), and this map stays as a cheap second guard.
    Groups are runs of CONSECUTIVE samples, so a batch laid out as [real..., fake...] with a size divisible by
    the group never mixes real and fake in one group (ProGAN's strided groups would).
    """
    n, c, h, w = features.shape
    group = min(group, n)
    while n % group:
        group -= 1
    grouped = features.float().view(n // group, group, c, h, w)
    std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # one number per group
    stat = std.view(-1, 1, 1, 1, 1).expand(n // group, group, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([features, stat.to(features.dtype)], dim=1)


class InversionEncoder(nn.Module):
    """Images (N, 3, tile, tile) in [-1, 1] -> latents (N, latent_dim) that the generator maps back to them."""

    def __init__(self, latent_dim: int = DEFAULT_LATENT_DIM, tile: int = DEFAULT_TILE, width: int = 64):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.tile = int(tile)
        self.width = int(width)
        stages = _num_stages(self.tile)
        chans = list(reversed(_stage_channels(self.width, stages)))
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                nn.GroupNorm(min(8, c_out), c_out),  # per-sample statistics: batch-independent
                nn.LeakyReLU(0.2),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.LeakyReLU(0.2),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * 16, self.latent_dim)

    @property
    def config(self) -> dict:
        return {"latent_dim": self.latent_dim, "tile": self.tile, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.tile, self.tile):
            raise ValueError(f"expected {self.tile}x{self.tile} tiles, got {tuple(x.shape[-2:])}")
        return self.head(self.body(x).flatten(1))


def d_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: push real scores above +1 and fake scores below -1."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def g_hinge_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge loss: raise the discriminator's score of generated images."""
    return -fake_scores.mean()


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def inversion_losses(
    encoder: nn.Module, generator: nn.Module, real: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's two objectives against a frozen generator.

    Returns (pixel loss: MSE of G(E(x)) vs real tiles x, latent loss: MSE of E(G(z)) vs z). The first is
    what the codec cares about; the second keeps E(x) on the generator's latent distribution, where the
    inversion search starts well.
    """
    pixel = F.mse_loss(generator(encoder(real)), real)
    with torch.no_grad():
        fake = generator(z)
    latent = F.mse_loss(encoder(fake), z)
    return pixel, latent


def latent_moment_loss(z: torch.Tensor) -> torch.Tensor:
    """How far a batch of encoded latents (N, latent_dim) is from N(0, 1) in its first two moments: the mean over
    coordinates of ``mean^2 + (var - 1)^2`` across the batch. Cheap, batch-level and enough to keep E(x) where the
    generator's adversarial training draws its z (and inside the quantiser's clip)."""
    mean = z.mean(0)
    var = z.var(0, unbiased=False)
    return (mean.pow(2) + (var - 1).pow(2)).mean()
