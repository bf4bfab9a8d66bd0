"""Encode-time latent refinement: approach 1's search applied to approach 2's latent.

The VAE-GAN's encoder is amortised: one forward pass guesses a latent for any image, and that guess is not the
best latent for *this* image. Starting from it, a few Adam steps on the latent itself lower this image's
rate-distortion cost ``MSE(decode(y_hat), x) + lam * bits(y_hat) / pixels`` (MSE on [0, 1] pixels, the unit
the model was trained in). The decoder and the prior stay fixed, so the decoder needs nothing new: a refined
file is an ordinary file. With a hyperprior model (gencomp/codecs/vaegan.py) the side latent z stays the
encoder's, and with it every element's mean and coding scale: the search refines y's residual symbols, and
``bits`` is their exact cost under those fixed scales (z's bits, fixed too, are left out of the search).

Rounding has no gradient. Stochastic Gumbel annealing (Yang, Bamler & Mandt 2020, "Improving Inference for
Neural Image Compression") replaces it by a random choice between floor and ceiling whose odds depend on the
distance to each (``atanh`` of it, so a value on an integer rounds there surely), relaxed with Gumbel-softmax
at a temperature annealed towards hard rounding. The cost is computed on that relaxed latent, so the search
sees both what rounding does to the picture and what each symbol costs under the prior.

The result is only kept when its *exact* cost (hard rounding, the prior's exact bits) is below the encoder's
own, so refinement never makes a file worse by the measure it optimises. With ``precision="bfloat16"`` the
search's decoder runs under bfloat16 autocast (oneDNN's bf16 kernels on CPUs with AVX512-BF16 or AMX, tensor
cores on a GPU); the rate terms, the optimiser and that exact comparison stay float32, so bf16 only changes
which nearby latent the search ends on. The noise comes from a generator
seeded by ``seed``: the same image, model and settings give the same file on one machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TAU_START = 0.5  # SGA's initial temperature; 0.5 keeps the floor/ceil odds soft
TAU_END = 0.05  # near-hard rounding by the last step
_EDGE = 1e-4  # atanh is infinite at 0 and 1
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class RefineResult:
    latent: torch.Tensor  # refined latent: integer symbols (quantized) or floats (raw storage)
    cost: float  # exact rate-distortion cost of what is returned
    initial_cost: float  # the same for the encoder's own latent
    steps: int


def sga_round(y: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """A differentiable, random stand-in for ``round(y)`` that tends to it as ``tau`` goes to 0."""
    floor = torch.floor(y)
    frac = _EDGE + (1.0 - 2.0 * _EDGE) * (y - floor)  # squeezed, not clamped: a clamp would stop gradients
    logits = torch.stack([-torch.atanh(frac), -torch.atanh(1.0 - frac)]) / tau
    uniform = torch.rand(logits.shape, generator=generator, dtype=y.dtype, device="cpu").to(y.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0)))
    ceil_weight = torch.softmax(logits + gumbel, dim=0)[1]
    return floor + ceil_weight


def refine_latent(
    latent: torch.Tensor,
    target: torch.Tensor,
    *,
    decode: Callable[[torch.Tensor], torch.Tensor],
    bits: Callable[[torch.Tensor], torch.Tensor] | None,
    steps: int,
    lam: float,
    lr: float = 0.05,
    seed: int = 0,
    precision: str = "float32",
) -> RefineResult:
    """Refine ``latent`` for ``target`` (N, 3, H, W in [0, 1]).

    With ``bits`` (the prior's information content of a symbol tensor) the latent is in symbol units and is
    returned rounded; without it (raw float storage, nothing to round and no rate to spend) it is refined on
    distortion alone and returned as floats. ``decode`` maps the latent to an image the size of ``target``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    pixels = target.shape[-1] * target.shape[-2] * target.shape[0]
    quantized = bits is not None
    fast = precision == "bfloat16"

    def search_distortion(y_hat: torch.Tensor) -> torch.Tensor:
        with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=fast):
            decoded = decode(y_hat)
        return F.mse_loss(decoded.float(), target)

    def exact_cost(y: torch.Tensor) -> float:
        with torch.no_grad():
            y_hat = torch.round(y) if quantized else y
            cost = F.mse_loss(decode(y_hat), target)
            if quantized:
                cost = cost + lam * bits(y_hat) / pixels
        return float(cost)

    start = latent.detach().clone()
    initial = exact_cost(start)
    if steps <= 0:
        return RefineResult(torch.round(start) if quantized else start, initial, initial, 0)

    generator = torch.Generator().manual_seed(seed)
    y = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=lr)
    with torch.enable_grad():
        for step in range(steps):
            if quantized:
                tau = max(TAU_START * math.exp(-4.0 * step / steps), TAU_END)
                y_hat = sga_round(y, tau, generator)
                loss = search_distortion(y_hat) + lam * bits(y_hat) / pixels
            else:
                loss = search_distortion(y)
            # the gradient of the latent only: the shared model's parameters are never touched
            (y.grad,) = torch.autograd.grad(loss, [y])
            optimizer.step()

    refined = y.detach()
    final = exact_cost(refined)
    if final >= initial:
        refined, final = start, initial
    return RefineResult(torch.round(refined) if quantized else refined, final, initial, steps)
