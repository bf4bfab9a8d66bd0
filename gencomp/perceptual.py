"""Perceptual quality measures that need no downloaded weights, all on 8-bit RGB images (values 0-255).

Full-reference, one number per (original, reconstruction) pair:

- ``haarpsi``: HaarPSI (Reisenhofer, Bosse, Kutyniok & Wiegand, "A Haar wavelet-based perceptual similarity
  index for image quality assessment", Signal Processing: Image Communication 2018). In [0, 1], 1 for identical
  images, higher is better. The authors' algorithm and constants (C = 30, alpha = 4.2, three Haar scales, the
  2x2 mean + dyadic subsampling that models the viewing distance, YIQ with their coefficients), MATLAB
  ``conv2(..., 'same')`` alignment of the even-sized filters, float64.
- ``gmsd``: Gradient Magnitude Similarity Deviation (Xue, Zhang, Mou & Bovik, IEEE TIP 2014). 0 for identical
  images, lower is better (typically under 0.35). As the authors' ``GMSD.m``: 2x2 mean and subsampling by 2,
  3x3 Prewitt gradients (``conv2 'same'``, zero borders), T = 170 on 0-255 values, standard deviation of the
  similarity map with MATLAB ``std2``'s N - 1. Computed on luma.
- ``vif``: pixel-domain VIF, VIFp (Sheikh & Bovik, "Image information and visual quality", IEEE TIP 2006), as
  the authors' ``vifp_mscale.m``: four scales with Gaussian windows of 17, 9, 5, 3 px (sigma = size / 5),
  ``filter2 'valid'``, subsampling by 2 between scales, sigma_n^2 = 2 on 0-255 values, the same clamping
  thresholds (1e-10). 1 for identical images (up to 1e-10), lower is worse; a reconstruction with more contrast
  than the original can exceed 1. Computed on luma. Images under 41 px on a side use the scales that fit (under
  17 px: NaN); a flat original (no variance at any scale) gives NaN, as the reference does (0 / 0).

Luma is Y = 0.299 R + 0.587 G + 0.114 B, the Y of HaarPSI's YIQ, for GMSD and VIF too (the references take one
grey plane; MATLAB's ``rgb2gray`` weights differ in the fourth decimal).

Distribution-level realism: ``swd``, the sliced Wasserstein distance between sets of Laplacian-pyramid patches
of the progressive-GAN paper (Karras, Aila, Laine & Lehtinen, ICLR 2018, metrics/sliced_wasserstein.py): per
pyramid level, 7x7x3 neighbourhoods at 128 random places of each image; each set of descriptors normalised per
colour channel by its own mean and standard deviation; 4 x 128 random unit directions; the mean absolute
difference of the sorted projections, x 1e3 as the paper reports it, averaged over levels. 0 for identical sets,
lower is better. Defined on *sets* of images (a data set's originals against its reconstructions by one codec
setting): :func:`swd_sets`. :func:`swd` is the same measure on the set of one image, with the patches of the
original and of the reconstruction taken at the same places. Differences from the reference, whose images
are all of one square power-of-two size:

- depth: the levels are the image's shorter side and its halvings down to 16 px (the paper's rule), at most
  four (bands at full, 1/2 and 1/4 size and the low-pass residual at 1/8: the paper's levels for 128 px
  images, e.g. CelebA-128 faces), so that images of different sizes in one data set share their levels; sets
  that mix sizes under 128 px pool each level over the images that have it;
- odd sizes: the pyramid's upsampling fills the next level's exact shape (cv2.pyrUp with dstsize) instead of
  twice the smaller one.

Randomness is fixed: places and directions come from ``numpy.random.default_rng`` seeded with
:data:`SWD_SEED` and the level, so every run, thread and machine draws the same ones, and original and
reconstruction patches pair up. Descriptors are stored in half precision (:func:`swd_descriptors`), which moves
SWD by about 1e-4 of its value. The normalisation per set makes SWD blind to a global change of contrast at one
level; it compares the shape of the patch distributions, as the paper intends.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.ndimage

from gencomp.atomic import write_bytes_atomic

# HaarPSI constants (the reference implementation's)
HAARPSI_C = 30.0
HAARPSI_ALPHA = 4.2
HAARPSI_SCALES = 3
# GMSD and VIF constants
GMSD_T = 170.0
VIF_SIGMA_NSQ = 2.0
VIF_EPS = 1e-10
# SWD parameters (the paper's, but for the depth: module docstring)
SWD_NHOOD = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_DIR_REPEATS = 4
SWD_DIRS_PER_REPEAT = 128
SWD_MIN_RESOLUTION = 16
SWD_MAX_LEVELS = 4
SWD_SEED = 2018
SWD_SCALE = 1e3

_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_BINOMIAL5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


# ---------------------------------------------------------------- shared helpers (numpy float64, scipy filters)


def _planes(arr: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> (3, H, W) float64."""
    return np.ascontiguousarray(np.asarray(arr).transpose(2, 0, 1), dtype=np.float64)


def _yiq(x: np.ndarray, rows: int = 3) -> np.ndarray:
    return np.einsum("oc,chw->ohw", np.array(_YIQ[:rows]), x)


def _luma(arr: np.ndarray) -> np.ndarray:
    return _yiq(_planes(arr), rows=1)[0]


def _mean2x2_same(x: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(x, ones(2) / 4, 'same')`` on the last two axes: mean of x[i:i+2, j:j+2], zeros past the
    last row and column."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 1)])
    return (p[..., :-1, :-1] + p[..., 1:, :-1] + p[..., :-1, 1:] + p[..., 1:, 1:]) / 4.0


def _subsample(x: np.ndarray) -> np.ndarray:
    """The references' viewing-distance step: 2x2 mean (``conv2 'same'``), then every other row and column."""
    return _mean2x2_same(x)[..., ::2, ::2]


def _conv_same(x: np.ndarray, along_rows: np.ndarray, along_cols: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(x, a * b', 'same')`` with zero borders, for a separable kernel (a down the rows, b across).

    conv2 'same' is a correlation with the flipped kernel whose centre is element floor(n / 2) of the flipped
    kernel for odd n and element n / 2 - 1 for even n (scipy's ``origin=-1``)."""
    y = x
    for axis, taps in ((-2, along_rows), (-1, along_cols)):
        taps = np.asarray(taps, dtype=np.float64)[::-1]
        origin = -1 if taps.size % 2 == 0 else 0
        y = scipy.ndimage.correlate1d(y, taps, axis=axis, mode="constant", cval=0.0, origin=origin)
    return y


def _similarity(a: np.ndarray, b: np.ndarray, constant: float) -> np.ndarray:
    return (2.0 * a * b + constant) / (a * a + b * b + constant)


# ---------------------------------------------------------------- HaarPSI


def _haar_coefficients(x: np.ndarray, scales: int) -> list[np.ndarray]:
    """Per scale s (2^s x 2^s Haar filter h, value 2^-s, upper half negative): (2, H, W) magnitudes of
    ``conv2(x, h, 'same')`` and ``conv2(x, h', 'same')``."""
    out = []
    for scale in range(1, scales + 1):
        half = 2 ** (scale - 1)
        step = np.concatenate([-np.ones(half), np.ones(half)])  # h = step (down the rows) x flat (across)
        flat = np.full(2 * half, 2.0**-scale)
        out.append(np.abs(np.stack([_conv_same(x, step, flat), _conv_same(x, flat, step)])))
    return out


def haarpsi_planes(reference: np.ndarray, distorted: np.ndarray) -> float:
    """HaarPSI of two (3, H, W) RGB or (H, W) grey float64 arrays on 0-255 (the reference's order of steps)."""
    colour = reference.ndim == 3
    if colour:
        reference, distorted = _yiq(reference), _yiq(distorted)
        y_r, y_d = _subsample(reference[0]), _subsample(distorted[0])
    else:
        y_r, y_d = _subsample(reference), _subsample(distorted)
    coef_r = _haar_coefficients(y_r, HAARPSI_SCALES)
    coef_d = _haar_coefficients(y_d, HAARPSI_SCALES)
    # weights: the coarsest scale's magnitudes; similarity: mean over the two finer scales; per orientation
    weights = [np.maximum(coef_r[-1][o], coef_d[-1][o]) for o in range(2)]
    similarity = [
        (_similarity(coef_r[0][o], coef_d[0][o], HAARPSI_C) + _similarity(coef_r[1][o], coef_d[1][o], HAARPSI_C))
        / 2
        for o in range(2)
    ]
    if colour:
        iq_r = np.abs(_mean2x2_same(_subsample(reference[1:])))
        iq_d = np.abs(_mean2x2_same(_subsample(distorted[1:])))
        similarity.append((_similarity(iq_r[0], iq_d[0], HAARPSI_C) + _similarity(iq_r[1], iq_d[1], HAARPSI_C)) / 2)
        weights.append((weights[0] + weights[1]) / 2)
    weights_all, similarity_all = np.stack(weights), np.stack(similarity)
    total = float(weights_all.sum())
    if total == 0.0:
        # no luminance structure at the coarsest scale in either image: both are black everywhere
        return 1.0 if np.array_equal(reference, distorted) else math.nan
    sigmoid = 1.0 / (1.0 + np.exp(-HAARPSI_ALPHA * similarity_all))
    pooled = float((sigmoid * weights_all).sum()) / total
    return (math.log(pooled / (1.0 - pooled)) / HAARPSI_ALPHA) ** 2


def haarpsi(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """HaarPSI of two HxWx3 uint8 images (module docstring): 1 for identical images, higher is better."""
    return haarpsi_planes(_planes(original), _planes(reconstruction))


# ---------------------------------------------------------------- GMSD

_PREWITT_SMOOTH = np.ones(3) / 3.0
_PREWITT_DIFF = np.array([1.0, 0.0, -1.0])


def gmsd_planes(reference: np.ndarray, distorted: np.ndarray) -> float:
    """GMSD of two (H, W) float64 grey planes on 0-255 (``GMSD.m``)."""

    def magnitude(x: np.ndarray) -> np.ndarray:
        ix = _conv_same(x, _PREWITT_SMOOTH, _PREWITT_DIFF)  # dx = [1 0 -1; 1 0 -1; 1 0 -1] / 3
        iy = _conv_same(x, _PREWITT_DIFF, _PREWITT_SMOOTH)  # dy = dx'
        return np.sqrt(ix * ix + iy * iy)

    quality = _similarity(magnitude(_subsample(reference)), magnitude(_subsample(distorted)), GMSD_T)
    if quality.size < 2:
        return 0.0
    return float(np.std(quality, ddof=1))


def gmsd(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """GMSD of two HxWx3 uint8 images on their luma (module docstring): 0 for identical, lower is better."""
    return gmsd_planes(_luma(original), _luma(reconstruction))


# ---------------------------------------------------------------- VIF (pixel domain)


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    # MATLAB fspecial('gaussian', size, sigma) is the outer product of this normalised 1-D window with itself
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(win, x, 'valid')`` for a separable, symmetric, odd-sized window, on the last two axes."""
    half = window.size // 2
    y = scipy.ndimage.correlate1d(x, window, axis=-2, mode="constant")
    y = scipy.ndimage.correlate1d(y, window, axis=-1, mode="constant")
    return y[..., half : y.shape[-2] - half, half : y.shape[-1] - half]


def vif_planes(reference: np.ndarray, distorted: np.ndarray) -> float:
    """VIFp of two (H, W) float64 grey planes on 0-255 (``vifp_mscale.m``)."""
    num = den = 0.0
    used = 0
    for scale in range(1, 5):
        size = 2 ** (4 - scale + 1) + 1
        window = _gaussian_1d(size, size / 5.0)
        if scale > 1:
            if min(reference.shape) < size:
                break
            reference = _filter_valid(reference, window)[::2, ::2]
            distorted = _filter_valid(distorted, window)[::2, ::2]
        if min(reference.shape) < size:
            break
        mu1, mu2, ref_sq, dist_sq, cross = _filter_valid(
            np.stack([reference, distorted, reference * reference, distorted * distorted, reference * distorted]),
            window,
        )
        sigma1_sq = np.maximum(ref_sq - mu1 * mu1, 0.0)
        sigma2_sq = np.maximum(dist_sq - mu2 * mu2, 0.0)
        sigma12 = cross - mu1 * mu2

        g = sigma12 / (sigma1_sq + VIF_EPS)
        sv_sq = sigma2_sq - g * sigma12
        flat1 = sigma1_sq < VIF_EPS
        g[flat1] = 0.0
        sv_sq[flat1] = sigma2_sq[flat1]
        sigma1_sq[flat1] = 0.0
        flat2 = sigma2_sq < VIF_EPS
        g[flat2] = 0.0
        sv_sq[flat2] = 0.0
        negative = g < 0
        sv_sq[negative] = sigma2_sq[negative]
        g[negative] = 0.0
        sv_sq = np.maximum(sv_sq, VIF_EPS)

        num += float(np.sum(np.log10(1.0 + g * g * sigma1_sq / (sv_sq + VIF_SIGMA_NSQ))))
        den += float(np.sum(np.log10(1.0 + sigma1_sq / VIF_SIGMA_NSQ)))
        used += 1
    if used == 0 or den == 0.0:
        return math.nan
    return num / den


def vif(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Pixel-domain VIF of two HxWx3 uint8 images on their luma (module docstring): 1 for identical images."""
    return vif_planes(_luma(original), _luma(reconstruction))


# ---------------------------------------------------------------- SWD: Laplacian pyramids and patch sets


def swd_levels(width: int, height: int) -> int:
    """Pyramid depth for an image: its shorter side and halvings down to 16 px, at most 4; 1 for images under
    16 px that still hold a 7 px neighbourhood; 0 below that (no SWD)."""
    side = min(width, height)
    if side < SWD_NHOOD:
        return 0
    levels = 0
    while side >= SWD_MIN_RESOLUTION and levels < SWD_MAX_LEVELS:
        levels += 1
        side //= 2
    return max(levels, 1)


def _blur5(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    # the separable 5x5 binomial filter of cv2.pyrDown / pyrUp, mirrored borders (reflect-101)
    kernel = _BINOMIAL5 * np.float32(scale)
    y = scipy.ndimage.correlate1d(x, kernel, axis=-2, mode="mirror")
    return scipy.ndimage.correlate1d(y, kernel, axis=-1, mode="mirror")


def pyr_down(x: np.ndarray) -> np.ndarray:
    """(C, H, W) float32 -> (C, ceil(H/2), ceil(W/2)), as cv2.pyrDown."""
    return _blur5(x)[:, ::2, ::2]


def pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float32 -> (C, *shape) with shape within one pixel of (2h, 2w), as cv2.pyrUp with dstsize."""
    up = np.zeros((x.shape[0], *shape), dtype=np.float32)
    up[:, ::2, ::2] = x[:, : (shape[0] + 1) // 2, : (shape[1] + 1) // 2]
    return _blur5(up, 2.0)  # 4x the kernel in 2-D: the zeros carry three quarters of the samples


def laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels of a (C, H, W) float32 image, finest first; the last level is the low-pass residual."""
    pyramid = [np.asarray(x, dtype=np.float32)]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1], pyramid[-2].shape[1:])
    return pyramid


def patch_places(level: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (y, x) of the :data:`SWD_PATCHES_PER_IMAGE` neighbourhoods taken from one level (fixed seed)."""
    half = SWD_NHOOD // 2
    rng = np.random.default_rng([SWD_SEED, 0, level])
    xs = rng.integers(half, width - half, size=SWD_PATCHES_PER_IMAGE)
    ys = rng.integers(half, height - half, size=SWD_PATCHES_PER_IMAGE)
    return ys, xs


def swd_directions(level: int, dim: int) -> list[np.ndarray]:
    """The :data:`SWD_DIR_REPEATS` raw Gaussian draws (dim, :data:`SWD_DIRS_PER_REPEAT`) of one level."""
    rng = np.random.default_rng([SWD_SEED, 1, level])
    return [rng.standard_normal((dim, SWD_DIRS_PER_REPEAT)) for _ in range(SWD_DIR_REPEATS)]


def patches(level: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(N, C, 7, 7) neighbourhoods of a (C, H, W) level centred at (ys, xs), in the reference's layout: channel,
    then column offset, then row offset (the order of the descriptor's components, which directions project)."""
    half = SWD_NHOOD // 2
    windows = np.lib.stride_tricks.sliding_window_view(level, (SWD_NHOOD, SWD_NHOOD), axis=(1, 2))
    return np.ascontiguousarray(windows[:, ys - half, xs - half].transpose(1, 0, 3, 2))


def swd_descriptors(image: np.ndarray, *, dtype=np.float16) -> np.ndarray:
    """Raw (unnormalised) patch descriptors of an HxWx3 uint8 image: (levels, 128, 3, 7, 7), ``dtype``.

    Half precision by default: the form the evaluation grid stores per (image, codec setting) for the set-level
    measure. An image too small for one 7x7 neighbourhood gives zero levels.
    """
    height, width = image.shape[:2]
    levels = swd_levels(width, height)
    if levels == 0:
        return np.zeros((0, SWD_PATCHES_PER_IMAGE, 3, SWD_NHOOD, SWD_NHOOD), dtype=dtype)
    pyramid = laplacian_pyramid(np.asarray(image, dtype=np.float32).transpose(2, 0, 1), levels)
    out = []
    for k, band in enumerate(pyramid):
        ys, xs = patch_places(k, band.shape[1], band.shape[2])
        out.append(patches(band, ys, xs))
    return np.stack(out).astype(dtype)


def normalize_descriptors(desc: np.ndarray) -> np.ndarray:
    """(N, C, 7, 7) -> (N, C * 49) float64, each colour channel centred and scaled to unit standard deviation
    over the set (a channel without variance is only centred)."""
    desc = np.asarray(desc, dtype=np.float64)
    desc = desc - desc.mean(axis=(0, 2, 3), keepdims=True)
    std = desc.std(axis=(0, 2, 3), keepdims=True)
    desc = desc / np.where(std > 0, std, 1.0)
    return desc.reshape(desc.shape[0], -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: Sequence[np.ndarray]) -> float:
    """Mean over repeats of the mean |sorted(a @ d) - sorted(b @ d)| over the unit directions d of a repeat.

    ``a`` and ``b`` are (N, dim) with the same N; ``directions`` are raw (dim, k) draws, normalised here.
    """
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets differ in shape: {a.shape} vs {b.shape}")
    # all repeats in one product (the repeats have equal sizes, so the mean of their means is the overall mean):
    # one BLAS call instead of four matters on a loaded machine, where each call's threads wait for a core
    dirs = np.concatenate([raw / np.sqrt(np.sum(raw * raw, axis=0, keepdims=True)) for raw in directions], axis=1)
    proj_a = np.sort(a @ dirs, axis=0)
    proj_b = np.sort(b @ dirs, axis=0)
    return float(np.mean(np.abs(proj_a - proj_b)))


def swd_per_level(originals: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray]) -> list[float]:
    """SWD x 1e3 per pyramid level between two sets of images given by their :func:`swd_descriptors`.

    ``originals[i]`` and ``reconstructions[i]`` are one image's descriptors (same depth). Level k pools the
    images that have a level k (all of them unless the set mixes sizes under 128 px on the shorter side).
    """
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} originals but {len(reconstructions)} reconstructions")
    for i, (o, r) in enumerate(zip(originals, reconstructions)):
        if o.shape != r.shape:
            raise ValueError(f"image {i}: descriptors of original {o.shape} and reconstruction {r.shape} differ")
    depth = max((len(o) for o in originals), default=0)
    values = []
    for k in range(depth):
        a = np.concatenate([o[k] for o in originals if len(o) > k])
        b = np.concatenate([r[k] for r in reconstructions if len(r) > k])
        directions = swd_directions(k, a[0].size)
        values.append(SWD_SCALE * sliced_wasserstein(normalize_descriptors(a), normalize_descriptors(b), directions))
    return values


def swd_sets(originals: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray]) -> float:
    """SWD x 1e3 between two image sets, averaged over pyramid levels (NaN when no image has a level)."""
    values = swd_per_level(originals, reconstructions)
    return float(np.mean(values)) if values else math.nan


def swd(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """SWD x 1e3 of one image against its reconstruction (patches at the same places in both)."""
    return swd_sets([swd_descriptors(original)], [swd_descriptors(reconstruction)])


# ---------------------------------------------------------------- descriptor files (the evaluation grid's)


def descriptors_path(path: str | Path) -> Path:
    """Where the descriptors of an image file or cache entry live: beside it, suffix ``.swd.npz``."""
    path = Path(path)
    return path.with_name(path.name.split(".", 1)[0] + ".swd.npz")


def save_descriptors(path: str | Path, desc: np.ndarray) -> Path:
    """Write descriptors atomically, deflated (147 KB of half floats per 4-level image become about 90 KB)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, descriptors=desc)
    return write_bytes_atomic(Path(path), buffer.getvalue())


def load_descriptors(path: str | Path) -> np.ndarray | None:
    """The descriptors stored at ``path``, or None when the file is missing or unreadable."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            desc = archive["descriptors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if desc.ndim != 5 or desc.shape[1:] != (SWD_PATCHES_PER_IMAGE, 3, SWD_NHOOD, SWD_NHOOD):
        return None
    return desc


def cached_descriptors(image: np.ndarray, path: str | Path) -> np.ndarray:
    """Descriptors of ``image``, read from ``path`` when stored there, else computed and stored."""
    desc = load_descriptors(path)
    if desc is None or desc.shape[0] != swd_levels(image.shape[1], image.shape[0]):
        desc = swd_descriptors(image)
        save_descriptors(path, desc)
    return desc
