"""Approach 2 of the poster: a VAE-GAN whose latent is stored as the compressed image.

ONE switchable model serves every row of the poster's Table 2 (latents of 28/16/8/4/2 channels): the encoder
always produces ``max_channels`` channels at H/16 x W/16, and the decoder reads only the first C of them (the
rest are zeroed). Training samples C from ``channel_set`` each step, so the channels come out ordered by
importance (a nested latent, like "matryoshka" representations) and one set of weights decodes at every C.
This costs a little quality at the largest C against five separate models, and saves four trainings.

The recipe is the proven one for learned image compression (Balle et al.): strided convolutions with GDN /
inverse GDN non-linearities, plus residual blocks at the latent resolution. Both decoders avoid transposed
convolutions (no checkerboard artefacts) and end in a sigmoid, so outputs are in [0, 1]:

- ``upsample="subpixel"`` (what every preset trains): each stage convolves at the LOW resolution to 4x the
  channels and rearranges them into a 2x larger map (pixel shuffle, Shi et al. 2016); the last stage produces
  the 3 RGB channels directly. No convolution runs at full resolution, so decoding costs ~4x fewer multiply-adds than
  ``nearest`` at the same width (measured: see BENCHMARKS.md, codec speed).
- ``upsample="subpixel-blur"``: the same, with ICNR initialisation and a fixed blur after every shuffle but the
  last (:class:`ShuffleUp`), against the periodic pattern plain sub-pixel decoders leave on the latent grid.
- ``upsample="nearest"``: nearest-neighbour upsampling then a 3x3 convolution at the new resolution, and a
  final convolution at full resolution. The constructor default, so model files written before the option
  existed (which carry no "upsample" key) load as what they are.
The discriminator is a spectrally normalised PatchGAN that scores overlapping patches, so it works at any size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DEFAULT_CHANNEL_SET = (28, 16, 8, 4, 2)
UPSAMPLE_MODES = ("subpixel", "subpixel-blur", "nearest")
# How the latent is entropy-coded: "channel", a per-channel prior (gencomp.models.prior); "hyperprior", a
# mean-scale hyperprior (gencomp.models.hyperprior) stored beside the model. The networks here are the same for
# both; the option is part of the model's config so a model file says how its files are coded. "channel" is the
# default, so model files written before the option existed load as what they are.
ENTROPY_MODELS = ("channel", "hyperprior")


class GDN(nn.Module):
    """Generalised divisive normalisation: ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``.

    With ``inverse=True`` it multiplies instead (IGDN, used in the decoder). beta and gamma are stored as
    square roots and squared in the forward pass, with lower bounds, so they stay positive under Adam.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_root.clamp(min=math.sqrt(self.beta_min)).pow(2)
        gamma = self.gamma_root.clamp(min=0).pow(2)
        norm = F.conv2d(x.pow(2), gamma[:, :, None, None], beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class ShuffleUp(nn.Module):
    """Pixel shuffle (2x), then, with ``blur``, a fixed [1, 2, 1] x [1, 2, 1] / 16 low-pass per channel.

    Sub-pixel convolution computes the four output phases of every 2x2 block with four different filters; any
    difference between them repeats with the block, a pattern with the period of the stage's grid (2, 4, 8, 16 px
    in the image for the four stages of a /16 decoder). The blur removes the period-2 component of the shuffled
    map and mixes neighbouring phases (Sugawara et al. 2019), ICNR initialisation (:func:`icnr_`) makes the
    phases start equal (Aitken et al. 2017). The module holds no parameters, so a model with and one without the
    blur have the same state_dict keys and shapes (``--init-from`` carries weights across).
    """

    def __init__(self, blur: bool):
        super().__init__()
        self.blur = bool(blur)
        self.shuffle = nn.PixelShuffle(2)
        kernel = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (kernel[:, None] * kernel[None, :] / 16.0)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(x)
        if not self.blur:
            return x
        c = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), groups=c)


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int = 2) -> None:
    """Initialise a conv feeding a pixel shuffle so its ``scale**2`` output phases start identical (ICNR)."""
    out_channels = conv.out_channels // (scale * scale)
    base = torch.empty(out_channels, conv.in_channels, *conv.kernel_size)
    nn.init.kaiming_uniform_(base, a=math.sqrt(5))  # what nn.Conv2d uses
    conv.weight.copy_(base.repeat_interleave(scale * scale, dim=0))
    if conv.bias is not None:
        conv.bias.copy_(conv.bias.view(out_channels, scale * scale)[:, :1].expand(-1, scale * scale).reshape(-1))


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


def _stages(downsample: int) -> int:
    stages = math.log2(downsample) if downsample >= 2 else -1
    if stages != int(stages) or stages < 1:
        raise ValueError(f"downsample must be a power of two >= 2, got {downsample}")
    return int(stages)


class VAEGAN(nn.Module):
    """Encoder x in [0,1] -> (mu, logvar) with ``max_channels`` channels at H/downsample; decoder back to [0,1]."""

    def __init__(
        self,
        max_channels: int = 28,
        channel_set: tuple[int, ...] = DEFAULT_CHANNEL_SET,
        width: int = 128,
        downsample: int = 16,
        upsample: str = "nearest",
        entropy_model: str = "channel",
    ):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if entropy_model not in ENTROPY_MODELS:
            raise ValueError(f"entropy_model must be one of {ENTROPY_MODELS}, got {entropy_model!r}")
        self.upsample = upsample
        self.entropy_model = entropy_model
        channel_set = tuple(sorted({int(c) for c in channel_set}, reverse=True))
        if not channel_set or channel_set[0] > max_channels or channel_set[-1] < 1:
            raise ValueError(f"channel_set {channel_set} must be non-empty and within 1..max_channels={max_channels}")
        self.max_channels = int(max_channels)
        self.channel_set = channel_set
        self.width = int(width)
        self.downsample = int(downsample)
        stages = _stages(self.downsample)

        enc: list[nn.Module] = []
        c_in = 3
        for _ in range(stages):
            enc += [nn.Conv2d(c_in, self.width, 5, stride=2, padding=2), GDN(self.width)]
            c_in = self.width
        enc += [ResBlock(self.width), ResBlock(self.width)]
        self.encoder = nn.Sequential(*enc)
        self.to_moments = nn.Conv2d(self.width, 2 * self.max_channels, 3, padding=1)

        dec: list[nn.Module] = [nn.Conv2d(self.max_channels, self.width, 3, padding=1), ResBlock(self.width),
                                ResBlock(self.width)]
        if upsample in ("subpixel", "subpixel-blur"):
            for stage in range(stages):
                last = stage == stages - 1
                c_out = 3 if last else self.width
                conv = nn.Conv2d(self.width, 4 * c_out, 3, padding=1)
                if upsample == "subpixel-blur":
                    icnr_(conv)
                # the last stage is not blurred: it would low-pass the image itself (half the response at a
                # quarter of the sampling rate); its 2-px period is below what the eye sees at viewing size
                dec += [GDN(self.width, inverse=True), conv, ShuffleUp(blur=upsample == "subpixel-blur" and not last)]
        else:
            for _ in range(stages):
                dec += [
                    GDN(self.width, inverse=True),
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(self.width, self.width, 3, padding=1),
                ]
            dec += [nn.LeakyReLU(0.2), nn.Conv2d(self.width, 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # Start with a small log-variance so the untrained latent carries information from step one.
        with torch.no_grad():
            self.to_moments.bias[self.max_channels:].fill_(-4.0)

    @property
    def config(self) -> dict:
        return {
            "max_channels": self.max_channels,
            "channel_set": list(self.channel_set),
            "width": self.width,
            "downsample": self.downsample,
            "upsample": self.upsample,
            # only when not the default: a channel-prior model's file stays byte for byte what it was before
            **({"entropy_model": self.entropy_model} if self.entropy_model != "channel" else {}),
        }

    def _check_size(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"image size {h}x{w} is not divisible by {self.downsample}; pad it first")

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N,3,H,W) in [0,1] -> (mu, logvar), each (N, max_channels, H/d, W/d)."""
        self._check_size(x)
        mu, logvar = self.to_moments(self.encoder(x * 2.0 - 1.0)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the posterior mean, (N, max_channels, H/d, W/d). The codec quantises it."""
        return self.moments(x)[0]

    def channel_mask(self, channels: int, device=None, dtype=None) -> torch.Tensor:
        if not 1 <= channels <= self.max_channels:
            raise ValueError(f"channels must be in 1..{self.max_channels}, got {channels}")
        mask = torch.zeros(1, self.max_channels, 1, 1, device=device, dtype=dtype)
        mask[:, :channels] = 1.0
        return mask

    def decode(self, y: torch.Tensor, channels: int | None = None) -> torch.Tensor:
        """Latent -> image in [0,1]. Only the first ``channels`` channels are read; the rest count as zero.

        ``y`` may carry all ``max_channels`` channels or just the first ``channels`` of them.
        """
        channels = self.max_channels if channels is None else int(channels)
        if y.shape[1] < channels:
            raise ValueError(f"latent has {y.shape[1]} channels, fewer than channels={channels}")
        y = y[:, :channels]
        if channels < self.max_channels:
            pad = y.new_zeros(y.shape[0], self.max_channels - channels, *y.shape[2:])
            y = torch.cat([y, pad], dim=1)
        return torch.sigmoid(self.decoder(y))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor | None = None,
                sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: returns (x_hat, mu, logvar, y) where y is the (noisy, masked) latent decoded.

        ``noise`` (same shape as mu) is added to mu when given (uniform noise, the rate-aware proxy for
        rounding); otherwise, when ``sample`` is true, y is drawn from N(mu, exp(logvar)) (the VAE
        reparameterisation). Masking by multiplication keeps every parameter in the graph, as DDP requires.
        """
        mu, logvar = self.moments(x)
        if noise is not None:
            y = mu + noise
        elif sample:
            y = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            y = mu
        y = y * mask
        return torch.sigmoid(self.decoder(y)), mu, logvar, y


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): images in [0,1] -> a map of realness scores, one per ~70px receptive field."""

    def __init__(self, width: int = 64, layers: int = 3):
        super().__init__()
        self.width = int(width)
        self.layers = int(layers)
        mods: list[nn.Module] = [spectral_norm(nn.Conv2d(3, self.width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        c = self.width
        for i in range(1, self.layers):
            c_out = self.width * min(2**i, 8)
            mods += [spectral_norm(nn.Conv2d(c, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c = c_out
        mods += [spectral_norm(nn.Conv2d(c, c, 3, padding=1)), nn.LeakyReLU(0.2),
                 spectral_norm(nn.Conv2d(c, 1, 3, padding=1))]
        self.body = nn.Sequential(*mods)

    @property
    def config(self) -> dict:
        return {"width": self.width, "layers": self.layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2.0 - 1.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over the used channels, averaged over batch and positions."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar) * mask
    return kl.sum(dim=1).mean()
