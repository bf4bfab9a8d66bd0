"""A per-channel prior over the rounded VAE-GAN latent, in the form constriction can entropy-code.

Choice: for each latent channel c, a *discretised Gaussian* with a learned (mean_c, scale_c), over integer
symbols ``q = round(mu / quant_step)``. The probability of symbol q is the Gaussian's mass on [q-0.5, q+0.5],
which is exactly what ``constriction.stream.model.QuantizedGaussian`` codes given (mean_c, scale_c), so the
codec and this module agree on every bit. All parameters are in symbol units (already divided by quant_step).

Two ways to obtain it:
- rate-aware training (rate_lambda > 0): the parameters are learned jointly with the model from
  ``likelihood(mu + U(-0.5, 0.5))`` (Balle et al.'s noise proxy for rounding), with quant_step = 1;
- poster-style training (rate_lambda = 0): after training, :meth:`fit` sets them to the per-channel mean
  and standard deviation of ``mu / quant_step`` over training latents.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SCALE_MIN = 0.11  # below ~0.11 a unit bin holds > 99.9% mass; smaller scales only cause numerical trouble
LIKELIHOOD_MIN = 1e-9  # floor so -log2 stays finite (caps one symbol's cost at ~30 bits)


class GaussianChannelPrior(nn.Module):
    """Discretised Gaussian per channel over integer symbols; ``channels`` = the model's max_channels."""

    family = "gaussian"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)
        self.mean = nn.Parameter(torch.zeros(self.channels))
        self.log_scale = nn.Parameter(torch.zeros(self.channels))

    @property
    def config(self) -> dict:
        return {"type": self.family, "channels": self.channels}

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(min=SCALE_MIN)

    def channel_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale), each float64 of shape (channels,), in symbol units: what QuantizedGaussian takes.

        The entropy coder needs the very same numbers wherever a file is written or read: one value off in its
        last bit shifts a CDF and desynchronises the ANS stream. So they are computed in float64 with Python's
        own ``math.exp`` (correctly rounded by glibc and the other common libms), never with torch's float32
        exp, whose GPU and vectorised CPU kernels differ in the last bit (a GPU-made file once failed to
        decode on the CPU for exactly that reason)."""
        mean = self.mean.detach().cpu().double().numpy().copy()
        log_scale = self.log_scale.detach().cpu().double().numpy()
        scale = np.array([max(math.exp(v), SCALE_MIN) for v in log_scale.tolist()], dtype=np.float64)
        return mean, scale

    def likelihood(self, y_hat: torch.Tensor, quant_scale: float = 1.0) -> torch.Tensor:
        """Probability of each symbol; ``y_hat`` is (N, C', H, W) with C' <= channels (the first C' channels).

        Takes rounded symbols at inference, or noisy reals (mu + uniform noise) during training. The result has
        the shape of ``y_hat``, floored at 1e-9. ``quant_scale`` s: symbols of a step s times the model's, whose
        mean and scale are the prior's divided by s (the codec's rate control).
        """
        c = y_hat.shape[1]
        if c > self.channels:
            raise ValueError(f"latent has {c} channels, the prior covers {self.channels}")
        mean = self.mean[:c].view(1, c, 1, 1).to(y_hat.dtype) / quant_scale
        scale = self.scale()[:c].view(1, c, 1, 1).to(y_hat.dtype) / quant_scale
        return discretised_gaussian_likelihood(y_hat, mean, scale)

    def bits(self, y_hat: torch.Tensor, quant_scale: float = 1.0) -> torch.Tensor:
        """Total information content, in bits, of ``y_hat`` under the prior (a scalar tensor)."""
        return -torch.log2(self.likelihood(y_hat, quant_scale)).sum()

    @torch.no_grad()
    def fit(self, count: torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor) -> None:
        """Set (mean, scale) from per-channel sufficient statistics of the symbols ``mu / quant_step``.

        ``count`` is the number of latent values per channel, ``total`` and ``total_sq`` their sums and sums of
        squares (float64 tensors of shape (channels,)); accumulating statistics lets DDP ranks all-reduce them.
        """
        if torch.any(count <= 0):
            raise ValueError("cannot fit the prior: no latent values were seen")
        mean = total / count
        var = (total_sq / count - mean.pow(2)).clamp(min=0)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.log_scale.copy_(torch.log(var.sqrt().clamp(min=SCALE_MIN)).to(self.log_scale.dtype))


def discretised_gaussian_likelihood(y_hat: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of N(mean, scale) on [y_hat - 0.5, y_hat + 0.5], elementwise (broadcast), floored at 1e-9: what
    QuantizedGaussian gives an integer symbol, and its noisy-proxy counterpart for reals."""
    # Upper and lower bin edges mirrored to the left tail, where erfc has precision (CompressAI trick).
    centred = (y_hat - mean).abs()
    upper = _std_normal_cdf((0.5 - centred) / scale)
    lower = _std_normal_cdf((-0.5 - centred) / scale)
    return (upper - lower).clamp(min=LIKELIHOOD_MIN)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))
