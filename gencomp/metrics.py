"""Image quality and rate metrics, all on 8-bit RGB images.

- ``psnr``: peak 255, one MSE over every pixel and channel of the whole image; identical images give ``inf``.
- ``ssim``: the poster's metric, ``pytorch_msssim.ssim`` on RGB values in [0, 255] with ``data_range=255``
  (11x11 Gaussian window, sigma 1.5), averaged over the three channels.
- ``ms_ssim``: ``pytorch_msssim.ms_ssim`` (5 scales, weights of Wang et al. 2003) on the same data. The
  library asserts that the shorter side exceeds 160 px so that the coarsest scale still holds an 11 px window.
  For smaller images we use as many scales as fit (shorter side > 10 * 2**(scales-1)) with the first weights
  renormalised to sum to 1, so small test crops get a comparable number instead of a crash. Below 11 px the
  window itself shrinks to the largest odd size that fits (same rule for ``ssim``). Numbers on images under
  161 px are therefore not comparable with published 5-scale MS-SSIM values.
- ``haarpsi`` (higher is better, 1 for identical images), ``gmsd`` (lower is better, 0 for identical), ``vif``
  (pixel-domain VIF, 1 for identical) and ``swd`` (sliced Wasserstein distance x 1e3 between Laplacian-pyramid
  patch sets, lower is better, 0 for identical): perceptual measures that need no downloaded weights, defined
  and checked against their reference implementations in :mod:`gencomp.perceptual`.
- ``bpp = 8 * bytes / (width * height)`` and ``cr = 24 / bpp`` (compression ratio against 24-bit RGB).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ms_ssim as _library_ms_ssim
from pytorch_msssim import ssim as _library_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from gencomp import perceptual

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5

ImageLike = Image.Image | np.ndarray


def _as_uint8_rgb(image: ImageLike, what: str) -> np.ndarray:
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"{what}: expected an RGB image, got mode {image.mode!r}")
        return np.asarray(image, dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 pixels, got {arr.dtype}")
    return arr


def _pair(original: ImageLike, reconstruction: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    a = _as_uint8_rgb(original, "original")
    b = _as_uint8_rgb(reconstruction, "reconstruction")
    if a.shape != b.shape:
        raise ValueError(
            f"original is {a.shape[1]}x{a.shape[0]} but reconstruction is {b.shape[1]}x{b.shape[0]}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("empty image")
    return a, b


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    # float32 as pytorch_msssim's own users feed it: twice as fast on CPU as float64 and within 1e-6 of it
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float32).unsqueeze(0)


def ssim_window_size(shorter_side: int) -> int:
    """The SSIM window for an image whose shorter side is this: 11 px, or the largest odd size that fits."""
    if shorter_side >= WINDOW_SIZE:
        return WINDOW_SIZE
    return shorter_side if shorter_side % 2 == 1 else shorter_side - 1


def mse(original: ImageLike, reconstruction: ImageLike) -> float:
    a, b = _pair(original, reconstruction)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(original: ImageLike, reconstruction: ImageLike) -> float:
    """PSNR in dB with peak 255 over the whole image; ``inf`` when the images are identical."""
    err = mse(original, reconstruction)
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 * 255.0 / err)


def ssim(original: ImageLike, reconstruction: ImageLike) -> float:
    """SSIM as ``pytorch_msssim.ssim`` computes it on RGB in [0, 255] (``data_range=255``)."""
    a, b = _pair(original, reconstruction)
    win_size = ssim_window_size(min(a.shape[:2]))
    x, y = _to_tensor(a), _to_tensor(b)
    with torch.no_grad():
        if win_size == WINDOW_SIZE:
            return float(_library_ssim(x, y, data_range=255, win_size=WINDOW_SIZE, win_sigma=WINDOW_SIGMA))
        # the public function squeezes size-1 dimensions away, so 1-px images go to the kernel directly
        win = _fspecial_gauss_1d(win_size, WINDOW_SIGMA).repeat([x.shape[1], 1, 1, 1])
        ssim_per_channel, _ = _ssim(x, y, data_range=255, win=win, size_average=False)
        return float(ssim_per_channel.mean())


def ms_ssim_scales(width: int, height: int) -> int:
    """Number of MS-SSIM scales used for an image of this size (5 from 161 px on the shorter side)."""
    shorter = min(width, height)
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and shorter > (WINDOW_SIZE - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim(original: ImageLike, reconstruction: ImageLike) -> float:
    """MS-SSIM (``pytorch_msssim``), with fewer scales and renormalised weights under 161 px (module doc)."""
    a, b = _pair(original, reconstruction)
    height, width = a.shape[:2]
    x, y = _to_tensor(a), _to_tensor(b)
    scales = ms_ssim_scales(width, height)
    with torch.no_grad():
        if scales == len(MS_SSIM_WEIGHTS):
            return float(_library_ms_ssim(x, y, data_range=255, win_size=WINDOW_SIZE, win_sigma=WINDOW_SIGMA))
        return _ms_ssim_few_scales(x, y, scales)


def _ms_ssim_few_scales(x: torch.Tensor, y: torch.Tensor, scales: int) -> float:
    # The library's algorithm (relu on contrast terms, 2x2 average pooling with odd-size padding), with the
    # 160 px assertion replaced by a scale count that fits the image.
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype)
    weights = weights / weights.sum()
    win_size = ssim_window_size(min(x.shape[-2:]))
    win = _fspecial_gauss_1d(win_size, WINDOW_SIGMA).repeat([x.shape[1], 1, 1, 1])
    contrast_terms = []
    for level in range(scales):
        ssim_per_channel, cs = _ssim(x, y, data_range=255, win=win, size_average=False)
        if level < scales - 1:
            contrast_terms.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=padding)
            y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=padding)
    stacked = torch.stack(contrast_terms + [torch.relu(ssim_per_channel)], dim=0)
    value = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)
    return float(value.mean())


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` for a ``width`` x ``height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid image size {width}x{height}")
    if num_bytes < 0:
        raise ValueError(f"negative byte count {num_bytes}")
    return 8.0 * num_bytes / (width * height)


def compression_ratio(bits_per_pixel: float) -> float:
    """Compression ratio against 24-bit RGB: ``24 / bpp`` (``inf`` for an empty file)."""
    if bits_per_pixel < 0:
        raise ValueError(f"negative bpp {bits_per_pixel}")
    if bits_per_pixel == 0:
        return math.inf
    return 24.0 / bits_per_pixel


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - ms_ssim)`` (``inf`` at 1), as RD plots in the literature use."""
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


def haarpsi(original: ImageLike, reconstruction: ImageLike) -> float:
    """HaarPSI (Reisenhofer et al. 2018): 1 for identical images, higher is better."""
    return perceptual.haarpsi(*_pair(original, reconstruction))


def gmsd(original: ImageLike, reconstruction: ImageLike) -> float:
    """GMSD (Xue et al. 2014) on luma: 0 for identical images, lower is better."""
    return perceptual.gmsd(*_pair(original, reconstruction))


def vif(original: ImageLike, reconstruction: ImageLike) -> float:
    """Pixel-domain VIF (Sheikh & Bovik 2006) on luma: 1 for identical images; NaN under 17 px or flat."""
    return perceptual.vif(*_pair(original, reconstruction))


def swd(original: ImageLike, reconstruction: ImageLike) -> float:
    """SWD x 1e3 between the Laplacian-pyramid patches of one image and of its reconstruction (0: identical)."""
    return perceptual.swd(*_pair(original, reconstruction))


# the direction of each quality measure
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "haarpsi": True, "vif": True, "gmsd": False,
                    "swd": False}  # fmt: skip


def all_metrics(original: ImageLike, reconstruction: ImageLike) -> dict[str, float]:
    """The full-reference measures of one reconstruction: psnr, ssim, ms_ssim, haarpsi, gmsd and vif.

    (``swd`` is left out: the evaluation grid computes it from stored patch descriptors, which the data set's
    SWD reuses.)"""
    a, b = _pair(original, reconstruction)
    return {
        "psnr": psnr(a, b),
        "ssim": ssim(a, b),
        "ms_ssim": ms_ssim(a, b),
        "haarpsi": perceptual.haarpsi(a, b),
        "gmsd": perceptual.gmsd(a, b),
        "vif": perceptual.vif(a, b),
    }
