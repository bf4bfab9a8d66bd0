"""A mean-scale hyperprior over the VAE-GAN latent (Balle et al. 2018, Minnen et al. 2018): side information z
that predicts, for every latent element, the mean and scale of the discretised Gaussian it is coded under.

Networks (CompressAI's ``MeanScaleHyperprior``, scaled to the VAE-GAN's latent at H/16):

- ``h_a``: the latent y (``latent_channels`` at H/16, the channels not coded zeroed) -> z (``channels`` at H/64):
  a 3x3 convolution, then two stride-2 5x5 convolutions, leaky ReLUs between. Padding 2 makes each stride-2
  stage produce ``ceil(n / 2)`` rows, so any latent size works;
- ``h_s``: z_hat -> (mean, log-scale) of every element of y: a 3x3 convolution, two sub-pixel 2x stages
  (a 3x3 convolution to 4x the channels + pixel shuffle), and a 3x3 convolution to ``2 * latent_channels``;
  the result (4x the size of z) is cropped to y's size;
- ``z_prior``: z's own density, a per-channel discretised Gaussian (:class:`GaussianChannelPrior`), over the
  integer symbols ``round(z)``.

Coding (CompressAI's ``GaussianConditional`` recipe). y is coded as residual symbols ``r = round((y - mean) / s)``
under a zero-mean discretised Gaussian whose scale is ``scale_table[index] / s`` (``s`` the codec's quant_scale);
the decoder's latent is ``y_hat = mean + r * s``. The entropy coder therefore sees only integers: the symbols and
one *scale index* per element, an integer into a fixed log-spaced table (:func:`scale_table`, ``SCALE_LEVELS``
values from ``SCALE_MIN`` to ``SCALE_MAX``, each computed with Python's correctly rounded ``math.exp``). The means
only shift the reconstruction (a last-bit difference there moves a pixel by far less than one grey level); an
index that differed between the encoder and the decoder would desynchronise the ANS stream.

Why the indices agree across processes and devices: the coding path (:meth:`Hyperprior.coding_params`) runs h_s
in float64 on the CPU, whatever device the model lives on, and picks the index by comparing the float64
log-scale with the table's float64 log-boundaries (midpoints, no ``exp`` of network outputs involved). z_hat is
integer, so its input is exact. The only source of difference left is the summation order of the float64
convolutions (thread count, SIMD width, BLAS kernel), which moves a log-scale of order 1 by ~1e-13 at most (a few
hundred float64 products per output); an index flips only if a log-scale lies that close to one of the table's
boundaries, which are 0.12 apart: ~2e-12 per element, ~1e-7 for the 43k elements of a 768x512 image at C = 28
(float32 arithmetic, as CompressAI uses, would make that ~1e-3). Such a file would not decode silently wrong: the
ANS stream desynchronises and the stream checks of :mod:`gencomp.codecs.entropy` refuse it (CorruptPayload).
tests/test_hyperprior.py encodes in one process and decodes in another with another thread count. (A strict
guarantee would need integer arithmetic in h_s, Balle et al. 2019 "Integer networks"; not done here.)

With ``context="checkerboard"`` (He et al. 2021, "Checkerboard Context Model for Efficient Learned Image
Compression") y is coded in two passes over a checkerboard of its positions: the *anchors* (row + column even)
under h_s's parameters exactly as above, then the other half under parameters that also see the decoded anchors
(:class:`CheckerboardContext`: a 5x5 convolution over the anchors' values, fused with h_s's output by 1x1
convolutions into a correction of h_s's mean and log-scale). Every non-anchor has decoded anchor neighbours on
four sides, so half of y is coded knowing its spatial surroundings, and both passes run in parallel over the
image (a serial autoregressive context, Minnen et al. 2018, saves a little more but decodes element by element).
The correction's last layer starts at zero, so a context added to a trained hyperprior starts out coding as well
as it did. The coding path runs the context in float64 on the CPU too, on the anchors' decoded values (integer
symbols times the quant scale plus h_s's float64 means), so the same argument about scale indices holds.

Training uses the continuous scale (``exp`` of the log-scale, floored at ``SCALE_MIN``) and Balle's uniform-noise
proxy for rounding on both y and z; coding rounds the scale *up* to the table (as CompressAI does), so the file
can cost slightly more than the training estimate, never less in expectation.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gencomp.models.prior import SCALE_MIN, GaussianChannelPrior, discretised_gaussian_likelihood

SCALE_MAX = 256.0  # in symbol units; larger scales are coded with this one (costlier, never wrong: escapes)
SCALE_LEVELS = 64
CONTEXTS = ("none", "checkerboard")
CONTEXT_WIDTH = 96  # channels of the context convolution over the anchors
CONTEXT_FUSION_WIDTH = 128  # of the 1x1 convolutions fusing it with h_s's output
LOG_SCALE_CLAMP = (math.log(SCALE_MIN) - 1.0, math.log(SCALE_MAX) + 1.0)  # training: keeps exp() finite


def log_scale_table() -> np.ndarray:
    """The log of every coding scale: ``SCALE_LEVELS`` evenly spaced float64 values, from Python arithmetic."""
    low, high = math.log(SCALE_MIN), math.log(SCALE_MAX)
    return np.array([low + (high - low) * i / (SCALE_LEVELS - 1) for i in range(SCALE_LEVELS)], dtype=np.float64)


def scale_table() -> np.ndarray:
    """The coding scales, ``math.exp`` of :func:`log_scale_table` (correctly rounded, the same everywhere)."""
    return np.array([math.exp(v) for v in log_scale_table().tolist()], dtype=np.float64)


def scale_indices(log_scale: np.ndarray) -> np.ndarray:
    """Index of the smallest table scale >= exp(log_scale), clipped to the table (CompressAI rounds up too).

    Compares in the log domain with the table's own float64 values, so no exp of a network output is involved."""
    table = log_scale_table()
    return np.clip(np.searchsorted(table, np.asarray(log_scale, dtype=np.float64), side="left"), 0,
                   SCALE_LEVELS - 1).astype(np.int64)


def anchor_mask(height: int, width: int) -> np.ndarray:
    """The checkerboard's anchors, (height, width) bool: the positions whose row + column is even."""
    rows, cols = np.indices((height, width))
    return (rows + cols) % 2 == 0


class CheckerboardContext(nn.Module):
    """(h_s's output, the decoded anchors with every other position zero) -> h_s's output corrected by what the
    anchors around each position say; read at the non-anchors only."""

    def __init__(self, latent_channels: int):
        super().__init__()
        c = int(latent_channels)
        self.context = nn.Conv2d(c, CONTEXT_WIDTH, 5, padding=2)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * c + CONTEXT_WIDTH, CONTEXT_FUSION_WIDTH, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(CONTEXT_FUSION_WIDTH, CONTEXT_FUSION_WIDTH, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(CONTEXT_FUSION_WIDTH, 2 * c, 1),
        )
        with torch.no_grad():  # start as no correction: a trained hyperprior keeps its rate
            self.fuse[-1].weight.zero_()
            self.fuse[-1].bias.zero_()

    def forward(self, hyper_out: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return hyper_out + self.fuse(torch.cat([hyper_out, self.context(anchors)], dim=1))


class Hyperprior(nn.Module):
    """h_a, h_s and z's density for a latent of ``latent_channels``; z has ``channels`` channels at 1/4 its size.
    With ``context="checkerboard"``, also the :class:`CheckerboardContext` of the second coding pass."""

    def __init__(self, latent_channels: int = 28, channels: int = 64, context: str = "none"):
        super().__init__()
        self.latent_channels = int(latent_channels)
        self.channels = int(channels)
        if self.latent_channels < 1 or self.channels < 1:
            raise ValueError(f"latent_channels and channels must be >= 1, got {latent_channels}, {channels}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        self.context = context
        n = self.channels
        self.h_a = nn.Sequential(
            nn.Conv2d(self.latent_channels, n, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(n, n, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(n, n, 5, stride=2, padding=2),
        )
        self.h_s = nn.Sequential(
            nn.Conv2d(n, n, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(n, 4 * n, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2),
            nn.Conv2d(n, 4 * n, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2),
            nn.Conv2d(n, 2 * self.latent_channels, 3, padding=1),
        )
        self.z_prior = GaussianChannelPrior(n)
        self.checkerboard = CheckerboardContext(self.latent_channels) if context == "checkerboard" else None

    @property
    def config(self) -> dict:
        # "context" only when there is one: a hyperprior model's file stays byte for byte what it was before
        return {"latent_channels": self.latent_channels, "channels": self.channels,
                **({"context": self.context} if self.context != "none" else {})}

    @staticmethod
    def z_size(height: int, width: int) -> tuple[int, int]:
        """z's rows and columns for a latent of ``height`` x ``width`` (two ceil-halvings)."""
        def halve(n: int) -> int:
            return -(-n // 2)

        return halve(halve(height)), halve(halve(width))

    def analyse(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, latent_channels, h, w), the channels not coded already zeroed -> z (N, channels, ceil(h/4), ...)."""
        if y.shape[1] != self.latent_channels:
            raise ValueError(f"latent has {y.shape[1]} channels, the hyperprior takes {self.latent_channels}")
        return self.h_a(y)

    def synthesise(self, z_hat: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z_hat -> (mean, log-scale) of y, each (N, latent_channels, height, width), in symbol units."""
        out = self.h_s(z_hat)[..., :height, :width]
        if out.shape[-2:] != (height, width):
            raise ValueError(f"z of size {tuple(z_hat.shape[-2:])} cannot describe a {height}x{width} latent")
        mean, log_scale = out.chunk(2, dim=1)
        return mean, log_scale

    def rate_bits(self, y_tilde: torch.Tensor, z_tilde: torch.Tensor, channels: int,
                  y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (bits of y's first ``channels`` channels given z, bits of z), from noisy proxies of both.

        With a checkerboard context, ``y`` (the latent before the noise, same shape) gives the anchors the
        context reads: ``mean + round(y - mean)``, the values the decoder will have (straight-through gradient)."""
        height, width = y_tilde.shape[-2:]
        out = self.h_s(z_tilde)[..., :height, :width]
        if self.checkerboard is not None:
            if y is None:
                raise ValueError("a checkerboard context needs the latent before the noise (y)")
            mean = out[:, : self.latent_channels]
            offset = y - mean
            decoded = mean + offset + (torch.round(offset) - offset).detach()
            anchors = torch.from_numpy(anchor_mask(height, width)).to(y.device)
            keep = anchors & (torch.arange(self.latent_channels, device=y.device) < channels)[:, None, None]
            context_out = self.checkerboard(out, decoded * keep)
            out = torch.where(anchors, out, context_out)
        mean, log_scale = out.chunk(2, dim=1)
        scale = log_scale.clamp(*LOG_SCALE_CLAMP).exp().clamp(min=SCALE_MIN)
        likelihood = discretised_gaussian_likelihood(y_tilde[:, :channels], mean[:, :channels], scale[:, :channels])
        return -torch.log2(likelihood).sum(), self.z_prior.bits(z_tilde)

    @torch.no_grad()
    def decoded_latent(self, y: torch.Tensor, channels: int, quant_scale: float = 1.0) -> torch.Tensor:
        """The latent a decoder reads from the file of ``y`` (N, latent_channels, h, w; symbol units, channels
        from ``channels`` on zeroed): z rounded, y's residuals around h_s's means rounded at ``quant_scale``
        (with a context, the non-anchors' around the means the decoded anchors give). The codec's arithmetic
        in the module's precision (the codec runs h_s and the context in float64, which moves a mean by far less
        than a symbol step): what training feeds a decoder that learns from the files' latents, not from noise."""
        height, width = y.shape[-2:]
        out = self.h_s(torch.round(self.h_a(y)))[..., :height, :width]
        c = self.latent_channels
        coded = (torch.arange(c, device=y.device) < channels)[:, None, None]

        def rounded(mean: torch.Tensor) -> torch.Tensor:
            return torch.where(coded, mean + torch.round((y - mean) / quant_scale) * quant_scale, 0.0)

        decoded = rounded(out[:, :c])
        if self.checkerboard is not None:
            anchors = torch.from_numpy(anchor_mask(height, width)).to(y.device)
            context_mean = self.checkerboard(out, decoded * anchors)[:, :c]
            decoded = torch.where(anchors, decoded, rounded(context_mean))
        return decoded

    @torch.no_grad()
    def start_from_channel_prior(self, prior: GaussianChannelPrior, symbol_ratio: float = 1.0) -> None:
        """Make h_s predict ``prior``'s per-channel (mean, scale) whatever z is: its last convolution's weights
        zeroed, its bias set to them. A hyperprior trained from a channel-prior model then starts coding y as
        well as that prior did, and learns from there what z adds (a fresh h_s starts at scale 1 everywhere and
        spends its first thousands of steps relearning the per-channel scales). ``symbol_ratio``: the prior's
        symbol step over this model's (its quant_step over 1 for a rate-aware run)."""
        if prior.channels != self.latent_channels:
            raise ValueError(f"the prior covers {prior.channels} channels, the hyperprior {self.latent_channels}")
        last = self.h_s[-1]
        c = self.latent_channels
        last.weight.zero_()
        last.bias[:c] = prior.mean.to(last.bias) * symbol_ratio
        last.bias[c:] = torch.log(prior.scale().to(last.bias) * symbol_ratio)

    def coding_h_s(self) -> nn.Module:
        """A float64 CPU copy of h_s, for :meth:`coding_params` (cached: the weights of a loaded model are fixed)."""
        cached = getattr(self, "_coding_h_s", None)
        if cached is None:
            cached = copy.deepcopy(self.h_s).to("cpu", torch.float64).eval().requires_grad_(False)
            object.__setattr__(self, "_coding_h_s", cached)  # not a submodule: stays out of state_dict
        return cached

    def coding_context(self) -> nn.Module:
        """A float64 CPU copy of the checkerboard context, as :meth:`coding_h_s` (cached)."""
        if self.checkerboard is None:
            raise ValueError("this hyperprior has no context")
        cached = getattr(self, "_coding_context", None)
        if cached is None:
            cached = copy.deepcopy(self.checkerboard).to("cpu", torch.float64).eval().requires_grad_(False)
            object.__setattr__(self, "_coding_context", cached)
        return cached

    @torch.no_grad()
    def coding_output(self, z_symbols: np.ndarray, height: int, width: int) -> np.ndarray:
        """h_s of z's integer symbols (channels, zh, zw): (2 * latent_channels, height, width) float64, every
        channel's mean then log-scale. float64 on the CPU: see the module docstring."""
        z = torch.from_numpy(np.asarray(z_symbols, dtype=np.float64)).unsqueeze(0)
        return self.coding_h_s()(z)[0, :, :height, :width].numpy()

    def split_output(self, out: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean float64, scale index int64) of the first ``channels`` channels of an h_s (or context) output."""
        mean = out[:channels]
        log_scale = out[self.latent_channels : self.latent_channels + channels]
        return np.ascontiguousarray(mean), scale_indices(log_scale)

    @torch.no_grad()
    def coding_params(self, z_symbols: np.ndarray, height: int, width: int, channels: int
                      ) -> tuple[np.ndarray, np.ndarray]:
        """What encoder and decoder both derive from z's integer symbols (channels, zh, zw): (mean float64,
        scale index int64), each (channels, height, width). float64 on the CPU: see the module docstring."""
        return self.split_output(self.coding_output(z_symbols, height, width), channels)

    @torch.no_grad()
    def coding_context_output(self, hyper_out: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """The second pass's output (2 * latent_channels, h, w) float64 from h_s's (:meth:`coding_output`) and
        the decoded anchors (C, h, w) float64, C <= latent_channels (the rest count as zero, as in training).

        Only the non-anchors' columns are computed (the anchors keep h_s's output, which is what codes them): the
        context's convolution as a matrix product over the 5x5 neighbourhoods of those positions, its 1x1
        convolutions as matrix products, all float64 BLAS -- half the work of the module's forward, and several
        times faster than float64 convolutions (tests/test_checkerboard.py checks the two agree)."""
        channels, height, width = anchors.shape
        is_anchor = anchor_mask(height, width)
        board = np.zeros((self.latent_channels, height, width), dtype=np.float64)
        board[:channels] = np.where(is_anchor, anchors, 0.0)
        net = self.coding_context()
        others = torch.from_numpy(np.flatnonzero(~is_anchor.reshape(-1)))
        k = net.context.kernel_size[0]
        neighbourhoods = F.unfold(torch.from_numpy(board).unsqueeze(0), k, padding=k // 2)[0][:, others]
        context = net.context.weight.reshape(net.context.out_channels, -1) @ neighbourhoods + net.context.bias[:, None]
        out = torch.from_numpy(np.ascontiguousarray(hyper_out)).reshape(2 * self.latent_channels, -1)
        features = torch.cat([out[:, others], context])
        for layer in net.fuse:
            if isinstance(layer, nn.Conv2d):
                features = layer.weight[:, :, 0, 0] @ features + layer.bias[:, None]
            else:
                features = F.leaky_relu(features, layer.negative_slope)
        result = out.clone()
        result[:, others] += features
        return result.reshape(2 * self.latent_channels, height, width).numpy()


def pad_channels(y: torch.Tensor, channels: int) -> torch.Tensor:
    """y's first C channels with zeros for the rest up to ``channels`` (what h_a sees for a C-channel file)."""
    if y.shape[1] >= channels:
        return y[:, :channels]
    return F.pad(y, (0, 0, 0, 0, 0, channels - y.shape[1]))
