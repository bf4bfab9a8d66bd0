"""Periodic artefacts on a codec's grid: the part of the coding error that repeats every ``period`` pixels.

A learned decoder that upsamples by sub-pixel convolution, or a codec that codes tiles independently, can leave a
pattern that repeats on its grid (a VAE-GAN's 16-px latent grid and its 2-px and 4-px sub-pixel phases; a GAN
inversion's 64-px tiles; a block codec's 8- or 16-px blocks). The eye sees it as a fine checkerboard or as seams,
even where PSNR is fine.

Measure: the error ``reconstruction - original`` in luma, high-passed (minus its 3x3 box mean, so smooth colour
shifts do not count), is averaged over *phases*: over all pixels whose column mod period is the same (a pattern
that repeats across the width, such as vertical seams), likewise for rows, and over the period x period 2-D
phases (a checkerboard, which the 1-D averages cancel). Image content cancels in the error, and error that does
not repeat averages towards 0 in every phase; a pattern that repeats survives the averaging. For the one of the
three views where the pattern is strongest:

- ``amplitude``: the root mean square of the phase means, in grey levels (0-255);
- ``floor``: the amplitude that pattern-free error of the same size would show by chance (the error's RMS over
  the square root of the pixels per phase);
- ``pattern``: ``sqrt(amplitude**2 - floor**2)``, the pattern's strength in grey levels with chance removed:
  the size-free number to compare and to set limits on;
- ``excess``: ``(amplitude / floor) ** 2``, the pattern's power over chance: about 1 without a pattern,
  several for a visible one. It grows with the image size for a fixed pattern, so compare it at equal sizes.

Averaging over the phases is sampling the error's spectrum at the grid's frequencies (k / period, l / period),
so this is the "excess power at the grid frequencies" test in the pixel domain, for patterns of any shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

ImageLike = Image.Image | np.ndarray
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class GridPattern:
    period: int
    view: str  # "columns", "rows" or "2d": where the pattern is strongest
    amplitude: float  # grey levels
    floor: float  # grey levels
    excess: float  # (amplitude / floor) ** 2

    @property
    def pattern(self) -> float:
        return float(np.sqrt(max(self.amplitude**2 - self.floor**2, 0.0)))


def _luma(image: ImageLike, what: str) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an RGB image, got shape {arr.shape}")
    return arr @ _LUMA


def _high_pass(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, 1, mode="reflect")
    box = sum(padded[i: i + x.shape[0], j: j + x.shape[1]] for i in range(3) for j in range(3)) / 9.0
    return x - box


def grid_pattern(original: ImageLike, reconstruction: ImageLike, period: int) -> GridPattern:
    """The repeating part of ``reconstruction - original`` on a ``period``-px grid anchored at the top left."""
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period}")
    ref, rec = _luma(original, "original"), _luma(reconstruction, "reconstruction")
    if ref.shape != rec.shape:
        raise ValueError(f"original is {ref.shape[1]}x{ref.shape[0]} but reconstruction is {rec.shape[1]}x{rec.shape[0]}")
    height, width = (s - s % period for s in ref.shape)
    if height < 4 * period or width < 4 * period:
        raise ValueError(f"image {ref.shape[1]}x{ref.shape[0]} is too small for a {period}-px grid "
                         f"(needs at least {4 * period} px each way)")
    error = _high_pass(rec - ref)[:height, :width]
    rms = float(np.sqrt((error**2).mean()))
    tiles = error.reshape(height // period, period, width // period, period)
    views = {
        "columns": (tiles.mean(axis=(0, 1, 2)), height * (width // period)),
        "rows": (tiles.mean(axis=(0, 2, 3)), (height // period) * width),
        "2d": (tiles.mean(axis=(0, 2)), (height // period) * (width // period)),
    }
    found = []
    for view, (means, per_phase) in views.items():
        amplitude = float(np.sqrt(((means - means.mean()) ** 2).mean()))
        floor = rms / np.sqrt(per_phase)
        excess = (amplitude / floor) ** 2 if floor > 0 else 0.0
        found.append(GridPattern(period, view, amplitude, float(floor), float(excess)))
    return max(found, key=lambda g: g.pattern)
