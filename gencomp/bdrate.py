"""Bjontegaard delta rate and delta quality between two rate-distortion curves.

BD-rate (VCEG-M33): fit log(rate) as a function of quality for each curve, integrate both fits over the
quality interval the two curves share, and turn the mean difference back into a rate ratio:
``100 * (exp(mean(log R_test - log R_anchor)) - 1)`` percent. Negative means the test codec needs fewer bits
for the same quality. BD-quality (BD-PSNR when the quality is PSNR) swaps the axes: fit quality against
log(rate) and average the quality difference over the shared log-rate interval; positive means the test codec
is better.

Quality measures where lower is better (GMSD, SWD) work unchanged for BD-rate, which compares rates at equal
quality whatever the direction of the quality axis. BD-quality takes ``higher_is_better=False`` for them and
then returns the mean *reduction* (anchor minus test), so that positive still means the test codec is better.

Methods:
- ``"cubic"``: the original least-squares cubic polynomial (needs at least 4 points per curve);
- ``"pchip"``: piecewise cubic Hermite interpolation through the points (monotone, no overshoot; the method
  of the JVET common test conditions and of the ``bjontegaard`` package), works from 2 points;
- ``"akima"``: Akima's piecewise cubic interpolation, works from 2 points.
The logarithm base does not matter: all three fits commute with rescaling the log-rate axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

METHODS = ("cubic", "pchip", "akima")
MIN_POINTS = {"cubic": 4, "pchip": 2, "akima": 2}


class NoOverlapError(ValueError):
    """The two curves share no interval of the integration axis."""


def _validated(rate: Sequence[float], quality: Sequence[float], what: str, method: str):
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; use one of {', '.join(METHODS)}")
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{what}: {r.size} rates but {q.size} quality values")
    if r.size < MIN_POINTS[method]:
        raise ValueError(
            f"{what}: method {method!r} needs at least {MIN_POINTS[method]} points, got {r.size}"
        )
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{what}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{what}: rates must be positive")
    return np.log(r), q


def _mean_over(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Mean of the fitted y(x) over [low, high]."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(x, y, 3)
        integral = poly.integ()
        return float((integral(high) - integral(low)) / (high - low))
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"method {method!r} needs distinct values on the integration axis, got {x.tolist()}")
    interpolant = PchipInterpolator(x, y) if method == "pchip" else Akima1DInterpolator(x, y)
    return float(interpolant.integrate(low, high) / (high - low))


def _overlap(a: np.ndarray, b: np.ndarray, axis: str) -> tuple[float, float]:
    low, high = max(a.min(), b.min()), min(a.max(), b.max())
    if not high > low:
        raise NoOverlapError(
            f"no overlapping {axis} range: anchor [{a.min():.4g}, {a.max():.4g}], "
            f"test [{b.min():.4g}, {b.max():.4g}]"
        )
    return float(low), float(high)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    method: str = "cubic",
) -> float:
    """BD-rate of the test curve against the anchor, in percent (negative: the test saves bits)."""
    log_ra, qa = _validated(anchor_rate, anchor_quality, "anchor", method)
    log_rt, qt = _validated(test_rate, test_quality, "test", method)
    low, high = _overlap(qa, qt, "quality")
    diff = _mean_over(qt, log_rt, low, high, method) - _mean_over(qa, log_ra, low, high, method)
    return 100.0 * math.expm1(diff)


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    method: str = "cubic",
    higher_is_better: bool = True,
) -> float:
    """BD-quality (BD-PSNR for PSNR) of the test curve against the anchor (positive: the test is better).

    With ``higher_is_better=False`` (GMSD, SWD) the sign is turned: the mean reduction of the measure."""
    log_ra, qa = _validated(anchor_rate, anchor_quality, "anchor", method)
    log_rt, qt = _validated(test_rate, test_quality, "test", method)
    low, high = _overlap(log_ra, log_rt, "log-rate")
    delta = _mean_over(log_rt, qt, low, high, method) - _mean_over(log_ra, qa, low, high, method)
    return delta if higher_is_better else -delta


bd_psnr = bd_quality
