"""Verification of candidate near-duplicate pairs on small aligned thumbnails (numpy only, batched).

The candidate search (:mod:`gencomp.data.neardup`) is loose on purpose: a crop, a caption or a 3 degree turn
moves a 64-bit hash by 8 to 16 bits, while different faces of one aligned layout (or two textures) can sit
as close. This module decides each candidate pair from the 64x64 greyscale thumbnails kept in the hash
cache: the whole image squashed to a square, so that a crop is a change of the sampled box and an aspect
change costs nothing.

1. **Align** (coarse, 16x16 from the thumbnail at 32x32): with the pair's mirror flag (known from the hash
   match) and in both directions ("B is a crop of A" and "A is a crop of B"), every box of the larger image
   with, per axis, a scale in {1, 0.96, 0.92, 0.88, 0.84} and the removed share on the left/top,
   centred or on the right/bottom (13 boxes per axis, 338 hypotheses) is compared with the other image by
   a *trimmed* correlation: the 4 worst of 16 cells are left out, so that an opaque caption box or a
   watermark in a corner pulls the alignment less towards cropping it away.
2. **Score** (fine, 32x32): the two best boxes of each direction and the whole image, each turned by -3, 0
   and +3 degrees about its centre (18 hypotheses), are resampled at 32x32 with a one-pixel margin. Both
   images are high-passed (the image minus its Gaussian blur, sigma 1 px) and, on a 4x4 grid of 8x8 cells,
   each cell's agreement ``1 - |x-y|^2 / (|x|^2 + |y|^2 + eps)`` is taken at the best of 9 one-pixel shifts
   (a turn between the tried angles moves a cell by about a pixel). The hypothesis's score is the mean of
   its best 10 of 16 cells.
3. **Refine** (Lucas-Kanade): the best hypothesis is a point of a coarse grid, and the high-passed detail
   loses much of its agreement at half a pixel off (a crop whose offset falls between the tried boxes, a
   turn of 5 degrees, a turn on a grown canvas). Gauss-Newton steps fit an affine map (6 parameters) and
   a gain and bias on Gaussian-blurred thumbnails (3 steps at sigma 3 px, then 4 at 1.5 px), on the inner
   75 % of the box, each pixel weighted by a Cauchy function of its residual so that a caption box pulls
   little; the refined map is scored as in 2. The pair's score is the better of the two. Only grid scores
   between 0.55 and 0.95 are refined: outside that band the decision is made.
4. **Coverage.** A cell without detail in either image agrees perfectly and proves nothing. When the
   counted cells hold less than a fifth of the detail of both images (different products on one white
   background, where only the background is left once the differing cells are dropped), the score is
   scaled down by that share.

High-passed detail is what separates two people in one aligned layout (their low frequencies, which the
hashes see, are alike); the cell trimming is what keeps a caption, a logo or the black corners of a turn
from failing a true copy. A pair is a near-duplicate when its score reaches the threshold
(``dedupe.verify_threshold``, chosen with ``benchmarks/dedupe_accuracy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THUMB = 64  # side of the stored thumbnail (uint8 greyscale, row-major)
FINE = 32  # side compared in the detail stage
_COARSE_IN = 32  # the thumbnail is box-averaged to this side for the coarse search
_COARSE = 16
_CELLS = 4  # cells per side, in both stages
_KEEP_COARSE = 12  # of 16 cells, the best that count when aligning
_KEEP_FINE = 10  # of 16 cells, the best that count in the score
_SCALES = (1.0, 0.96, 0.92, 0.88, 0.84)
_OFFSETS = (0.0, 0.5, 1.0)  # share of the removed part taken at the left/top
_ANGLES_DEG = (-3.0, 0.0, 3.0)
_TOP_BOXES = 2  # coarse boxes per direction that reach the fine stage (plus the whole image)
_SIGMA = 1.0  # high-pass at FINE resolution
_BATCH = 128  # pairs per numpy batch
_MIN_COVER = 0.2  # share of detail the counted cells must hold in one of the images (below: score scaled)


def _axis_boxes() -> list[tuple[float, float]]:
    out = []
    for s in _SCALES:
        for o in _OFFSETS if s < 1 else (0.5,):
            lo = (1.0 - s) * o
            out.append((lo, lo + s))
    return out


AXIS_BOXES = _axis_boxes()
_NB = len(AXIS_BOXES)


def _interp(n_out: int, n_in: int, lo: float, hi: float) -> np.ndarray:
    """(n_out, n_in) bilinear weights sampling the span [lo, hi) (fractions of the input) at n_out centres."""
    pos = lo * n_in + (np.arange(n_out) + 0.5) * (hi - lo) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    np.add.at(m, (np.arange(n_out), i0), 1 - w)
    np.add.at(m, (np.arange(n_out), i1), w)
    return m


def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) Gaussian blur with edge replication, as a matrix (applied to rows and to columns)."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    m = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for t, w in zip(range(-r, r + 1), k):
            m[i, min(max(i + t, 0), n - 1)] += w
    return m


# Coarse: all boxes of one axis stacked, so that one matmul per side resamples every box.
_R_COARSE = np.concatenate([_interp(_COARSE, _COARSE_IN, lo, hi) for lo, hi in AXIS_BOXES])  # (NB*16, 32)
_FULL_COARSE = _interp(_COARSE, _COARSE_IN, 0.0, 1.0)
_DOWN = _interp(_COARSE_IN, THUMB, 0.0, 1.0)  # 64 -> 32 (averages pixel pairs)
_BLUR_THUMB = _gauss_matrix(THUMB, 0.6)  # anti-aliasing before sampling at 32
_HP = np.eye(FINE + 2, dtype=np.float32) - _gauss_matrix(FINE + 2, _SIGMA)


def _both_sides(left: np.ndarray, x: np.ndarray, right_t: np.ndarray) -> np.ndarray:
    """``left @ x[p] @ right_t`` for every p, as two plain 2-D matrix products (BLAS), not a batched loop."""
    p, h, w = x.shape
    y = (x.reshape(p * h, w) @ right_t).reshape(p, h, -1)  # (P, h, W')
    w2 = y.shape[2]
    z = left @ y.transpose(1, 0, 2).reshape(h, p * w2)  # (H', P*W')
    return np.ascontiguousarray(z.reshape(len(left), p, w2).transpose(1, 0, 2))


def _cells(x: np.ndarray, n: int) -> np.ndarray:
    """(..., n, n) -> (..., 16, (n/4)^2): the 4x4 grid of cells, each flattened."""
    c = n // _CELLS
    lead = x.shape[:-2]
    x = x.reshape(*lead, _CELLS, c, _CELLS, c)
    x = np.swapaxes(x, -3, -2)
    return x.reshape(*lead, _CELLS * _CELLS, c * c)


def _zscore(a: np.ndarray, axes) -> np.ndarray:
    a = a - a.mean(axis=axes, keepdims=True)
    return a / (np.sqrt((a * a).mean(axis=axes, keepdims=True)) + 1e-3)


def _coarse(src32: np.ndarray, dst32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed correlation of every box of ``src32`` with ``dst32``: (P, NB, NB) scores (ky, kx)."""
    p = len(src32)
    tgt = _zscore(_both_sides(_FULL_COARSE, dst32, _FULL_COARSE.T), (-2, -1))  # (P, 16, 16)
    reg = _both_sides(_R_COARSE, src32, _R_COARSE.T)  # (P, NB*16, NB*16)
    reg = reg.reshape(p, _NB, _COARSE, _NB, _COARSE).transpose(0, 1, 3, 2, 4)  # (P, ky, kx, 16, 16)
    reg = _zscore(reg, (-2, -1))
    cell = _cells(reg * tgt[:, None, None], _COARSE).mean(axis=-1)  # (P, ky, kx, 16)
    drop = _CELLS * _CELLS - _KEEP_COARSE
    worst = np.partition(cell, drop - 1, axis=-1)[..., :drop].sum(axis=-1)
    return (cell.sum(axis=-1) - worst) / _KEEP_COARSE


def _affine(box: np.ndarray, theta: np.ndarray, aspect: np.ndarray, n: int = THUMB) -> np.ndarray:
    """(P, 2, 3) maps from grid coordinates (u, v, box units centred on 0) to pixel coordinates of an n x n
    image: ``(x, y) = A @ (1, u, v)``, for the box (P, 4: x0, y0, x1, y1 as fractions) turned by ``theta``
    (P,) radians about its centre. ``aspect`` (P,): width/height of the image the square was squashed
    from, so that the turn is a true one."""
    x0, y0, x1, y1 = (box[:, i].astype(np.float32) for i in range(4))
    a = np.asarray(aspect, np.float32)
    c, s = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    w, h = x1 - x0, y1 - y0
    out = np.empty((len(box), 2, 3), np.float32)
    out[:, 0, 0] = (x0 + x1) / 2 * n - 0.5
    out[:, 0, 1] = n * w * c
    out[:, 0, 2] = -n * h * s / a
    out[:, 1, 0] = (y0 + y1) / 2 * n - 0.5
    out[:, 1, 1] = n * w * a * s
    out[:, 1, 2] = n * h * c
    return out


def _grid(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates (u, v), flattened row-major, of m x m samples: FINE across the box, and for
    m > FINE the extra samples outside it, half on each side."""
    t = (np.arange(m, dtype=np.float32) - (m - FINE) / 2 + 0.5) / FINE - 0.5
    v, u = np.meshgrid(t, t, indexing="ij")
    return u.ravel(), v.ravel()


def _bilinear(src: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``src`` (P, n, n) at pixel coordinates (P, M), clamped to the image."""
    p, n, _ = src.shape
    px = np.clip(px, 0, n - 1.001)
    py = np.clip(py, 0, n - 1.001)
    ix, iy = px.astype(np.int64), py.astype(np.int64)
    fx, fy = px - ix, py - iy
    flat = src.reshape(p, n * n)
    base = iy * n + ix

    def g(off):
        return np.take_along_axis(flat, base + off, axis=1)

    return (g(0) * (1 - fx) + g(1) * fx) * (1 - fy) + (g(n) * (1 - fx) + g(n + 1) * fx) * fy


def _warp_coords(warp: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    u, v = _grid(m)
    px = warp[:, 0, 0:1] + warp[:, 0, 1:2] * u + warp[:, 0, 2:3] * v
    py = warp[:, 1, 0:1] + warp[:, 1, 1:2] * u + warp[:, 1, 2:3] * v
    return px, py


def _sample(src: np.ndarray, warp: np.ndarray, m: int = FINE + 2) -> np.ndarray:
    """``src`` (P, n, n) sampled through ``warp`` (P, 2, 3) on an m x m grid (P, m, m); the default is the
    box at FINE x FINE with one extra sample on every side."""
    return _bilinear(src, *_warp_coords(warp, m)).reshape(len(src), m, m)


# Coarse to fine: steps on thumbnails blurred at sigma 3 px first (a wide capture range: the grid's box can be
# 10 % off when black corners pulled it), then at 1.5 px (precision).
_REFINE_SCHEDULE = ((_gauss_matrix(THUMB, 3.0), 3), (_gauss_matrix(THUMB, 1.5), 4))
# Grid scores that are refined: above 0.95 a pair is a copy at any threshold in use; below 0.55 refinement
# cannot reach one (the largest lift measured on copies and look-alikes was 0.27), and most look-alikes sit
# there, so it would only cost time.
_REFINE_BAND = (0.55, 0.95)
# Only the inner part of the box is fitted (|u|, |v| < 0.375 of its size): at the rim, the blur carries in
# what lies outside the shared content (a turn's black corners, the edge of a crop), which pulls the box in.
_REFINE_INNER = 0.375


def _refine(src: np.ndarray, dst: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Lucas-Kanade: the affine ``warp`` (P, 2, 3) of ``src`` onto ``dst`` (both (P, 64, 64)) refined by
    Gauss-Newton steps on the blurred images, with a gain and bias and Cauchy weights (module docstring)."""
    p = len(src)
    whole = _affine(np.tile(np.array([0, 0, 1, 1], np.float32), (p, 1)), np.zeros(p, np.float32), np.ones(p))
    u, v = _grid(FINE)
    inner = ((np.abs(u) < _REFINE_INNER) & (np.abs(v) < _REFINE_INNER)).astype(np.float32)
    warp = warp.copy()
    for blur, steps in _REFINE_SCHEDULE:
        img = _both_sides(blur, src, blur.T)
        gx = np.zeros_like(img)
        gy = np.zeros_like(img)
        gx[:, :, 1:-1] = (img[:, :, 2:] - img[:, :, :-2]) / 2
        gy[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
        target = _sample(_both_sides(blur, dst, blur.T), whole, FINE).reshape(p, -1)
        gain = bias = None
        for _ in range(steps):
            px, py = _warp_coords(warp, FINE)
            seen, ix, iy = _bilinear(img, px, py), _bilinear(gx, px, py), _bilinear(gy, px, py)
            if gain is None:  # start from matched mean and spread
                gain = (target.std(1) + 1e-3) / (seen.std(1) + 1e-3)
                bias = target.mean(1) - gain * seen.mean(1)
            r = gain[:, None] * seen + bias[:, None] - target
            scale = 1.4826 * np.median(np.abs(r), axis=1, keepdims=True) + 1.0
            w = inner / (1.0 + (r / (2.5 * scale)) ** 2)
            g = gain[:, None]
            jac = np.stack([g * ix, g * ix * u, g * ix * v, g * iy, g * iy * u, g * iy * v, seen,
                            np.ones_like(seen)], -1)
            hess = np.einsum("pmi,pm,pmj->pij", jac, w, jac) + 1e-3 * np.eye(8, dtype=np.float32)
            step = np.linalg.solve(hess, -np.einsum("pmi,pm,pm->pi", jac, w, r)[..., None])[..., 0]
            step[:, [0, 3]] = np.clip(step[:, [0, 3]], -1.5, 1.5)  # at most 1.5 px of shift per step
            step[:, [1, 2, 4, 5]] = np.clip(step[:, [1, 2, 4, 5]], -4.0, 4.0)  # and about 6 % of scale
            warp[:, 0, :] += step[:, 0:3]
            warp[:, 1, :] += step[:, 3:6]
            gain = gain + step[:, 6]
            bias = bias + step[:, 7]
    return warp


def _fine(src: np.ndarray, dst_hp_cells: np.ndarray, dst_energy: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Score of one hypothesis (a warp of ``src``) per pair (see the module docstring)."""
    reg = _both_sides(_HP, _sample(src, warp), _HP.T)  # (P, FINE+2, FINE+2)
    eps = 0.02 * dst_energy.mean(axis=-1, keepdims=True) + 1.0
    best = np.full(dst_energy.shape, -np.inf, dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            xc = _cells(reg[:, dy:dy + FINE, dx:dx + FINE], FINE)
            diff = ((xc - dst_hp_cells) ** 2).sum(-1)
            best = np.maximum(best, 1.0 - diff / ((xc * xc).sum(-1) + dst_energy + eps))
    drop = _CELLS * _CELLS - _KEEP_FINE
    order = np.argsort(best, axis=-1)
    kept = np.zeros(best.shape, dtype=bool)
    np.put_along_axis(kept, order[:, drop:], True, axis=-1)
    score = np.where(kept, best, 0.0).sum(axis=-1) / _KEEP_FINE
    # Coverage: the share of an image's detail that lies in the cells that counted (the better of the two
    # images). Cells without detail agree perfectly and prove nothing: two product shots on one white
    # background, or two faces before one plain wall, would otherwise match on the background alone once
    # the cells that differ were left out.
    src_energy = (_cells(reg[:, 1:1 + FINE, 1:1 + FINE], FINE) ** 2).sum(-1)
    floor = _CELLS * _CELLS * eps[:, 0]
    cover = np.maximum((np.where(kept, src_energy, 0).sum(-1) + floor) / (src_energy.sum(-1) + floor),
                       (np.where(kept, dst_energy, 0).sum(-1) + floor) / (dst_energy.sum(-1) + floor))
    return score * np.minimum(1.0, cover / _MIN_COVER) if _MIN_COVER > 0 else score


@dataclass(frozen=True)
class Alignment:
    """Per pair, the best hypothesis: ``direction`` 0 when a box of A matches B (B is a crop of A), 1 when a
    box of B matches A; the grid hypothesis it started from (``box``: x0, y0, x1, y1 as fractions of that
    image; ``angle`` in degrees); ``warp`` (P, 2, 3), the affine map from B's (direction 0) or A's grid to
    the other thumbnail's pixels that gave the score; ``refined``: the Lucas-Kanade map beat the grid's."""

    direction: np.ndarray
    box: np.ndarray
    angle: np.ndarray
    warp: np.ndarray
    refined: np.ndarray

    @staticmethod
    def choose(take_second: np.ndarray, first: "Alignment", second: "Alignment") -> "Alignment":
        t = np.asarray(take_second, dtype=bool)
        return Alignment(*(np.where(t.reshape((-1,) + (1,) * (x.ndim - 1)), y, x)
                           for x, y in zip(first.fields(), second.fields())))

    def fields(self) -> tuple[np.ndarray, ...]:
        return self.direction, self.box, self.angle, self.warp, self.refined


def as_thumbs(values) -> np.ndarray:
    """Thumbnails as a (P, 64, 64) float32 array, from uint8 arrays or from the cache's bytes values."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        t = values
    else:
        t = np.stack([np.frombuffer(v, dtype=np.uint8) for v in values]) if len(values) else np.zeros((0, THUMB * THUMB))
    t = np.asarray(t)
    if t.ndim == 2:
        t = t.reshape(len(t), THUMB, THUMB)
    return t.astype(np.float32)


_SMALL_BLUR: dict = {}


def _detail_limit(thumbs: np.ndarray, short_side) -> np.ndarray:
    """Blur the thumbnails of pairs whose smaller image has a short side under THUMB pixels: their thumbnail
    is an upsampling, and its "detail" is interpolation that two resamplings of one image do not share."""
    if short_side is None:
        return thumbs
    side = np.asarray(short_side, dtype=np.float64)
    sigma = np.where(side < THUMB, np.round(np.clip(0.5 * THUMB / np.maximum(side, 1), 0.5, 4.0) * 2) / 2, 0.0)
    out = thumbs.copy()
    for s in np.unique(sigma[sigma > 0]):
        if s not in _SMALL_BLUR:
            _SMALL_BLUR[s] = _gauss_matrix(THUMB, float(s))
        sel = np.nonzero(sigma == s)[0]
        out[sel] = _both_sides(_SMALL_BLUR[s], thumbs[sel], _SMALL_BLUR[s].T)
    return out


def verify_pairs(thumbs_a, thumbs_b, mirror=None, *, aspect_a=None, aspect_b=None, short_side=None,
                 batch: int = _BATCH) -> tuple[np.ndarray, Alignment]:
    """Score P candidate pairs: ``thumbs_a``/``thumbs_b`` (P, 64, 64) uint8 (or the cache's bytes), ``mirror``
    (P,) bool: True when B is a left-right mirror image of A (None: both are tried, the better kept);
    ``aspect_a``/``aspect_b``: width/height of the images (None: 1); ``short_side``: (P,) the smaller short
    side of the two images in pixels (None: large enough), under 64 px the comparison is made coarser.

    Returns ``(score, alignment)``; score 1 means identical detail, different images of one layout score
    about 0.2-0.6 (see BENCHMARKS.md for the measured distributions).
    """
    a_all = _detail_limit(as_thumbs(thumbs_a), short_side)
    b_all = _detail_limit(as_thumbs(thumbs_b), short_side)
    p = len(a_all)
    asp_a = np.ones(p, np.float32) if aspect_a is None else np.asarray(aspect_a, np.float32)
    asp_b = np.ones(p, np.float32) if aspect_b is None else np.asarray(aspect_b, np.float32)
    if mirror is None:
        s0, al0 = verify_pairs(a_all, b_all, np.zeros(p, bool), aspect_a=asp_a, aspect_b=asp_b, batch=batch)
        s1, al1 = verify_pairs(a_all, b_all, np.ones(p, bool), aspect_a=asp_a, aspect_b=asp_b, batch=batch)
        return np.maximum(s0, s1), Alignment.choose(s1 > s0, al0, al1)
    mirror = np.asarray(mirror, dtype=bool)
    score = np.full(p, -np.inf, dtype=np.float32)
    direction = np.zeros(p, dtype=np.int8)
    box_out = np.zeros((p, 4), dtype=np.float32)
    angle_out = np.zeros(p, dtype=np.float32)
    warp_out = np.zeros((p, 2, 3), dtype=np.float32)
    refined = np.zeros(p, dtype=bool)
    boxes = np.asarray(AXIS_BOXES, dtype=np.float32)
    whole = np.array([0, 0, 1, 1], dtype=np.float32)
    for lo in range(0, p, batch):
        sl = slice(lo, min(p, lo + batch))
        n = sl.stop - sl.start
        a = _both_sides(_BLUR_THUMB, a_all[sl], _BLUR_THUMB.T)
        b = _both_sides(_BLUR_THUMB, b_all[sl], _BLUR_THUMB.T)
        b = np.where(mirror[sl, None, None], b[..., ::-1], b)  # B as seen unmirrored
        sides = ((a, b, asp_a[sl]), (b, a, asp_b[sl]))
        target = []  # per direction: the other image's high-passed cells and their energies
        for d, (src, dst, asp) in enumerate(sides):
            scores = _coarse(_both_sides(_DOWN, src, _DOWN.T), _both_sides(_DOWN, dst, _DOWN.T)).reshape(n, -1)
            top = np.argsort(-scores, axis=1)[:, :_TOP_BOXES]
            dst_full = _sample(dst, _affine(np.tile(whole, (n, 1)), np.zeros(n, np.float32), np.ones(n)))
            dst_hp = _both_sides(_HP, dst_full, _HP.T)[:, 1:-1, 1:-1]
            dst_cells = _cells(dst_hp, FINE)
            dst_energy = (dst_cells * dst_cells).sum(-1)
            target.append((dst_cells, dst_energy))
            hyps = [np.tile(whole, (n, 1))]
            for r in range(_TOP_BOXES):
                ky, kx = np.divmod(top[:, r], _NB)
                hyps.append(np.stack([boxes[kx, 0], boxes[ky, 0], boxes[kx, 1], boxes[ky, 1]], axis=1))
            for box in hyps:
                for deg in _ANGLES_DEG:
                    warp = _affine(box, np.full(n, np.deg2rad(deg), np.float32), asp)
                    s = _fine(src, dst_cells, dst_energy, warp)
                    upd = s > score[sl]
                    score[sl] = np.where(upd, s, score[sl])
                    direction[sl] = np.where(upd, d, direction[sl])
                    box_out[sl] = np.where(upd[:, None], box, box_out[sl])
                    angle_out[sl] = np.where(upd, deg, angle_out[sl])
                    warp_out[sl] = np.where(upd[:, None, None], warp, warp_out[sl])
        # Refine the best grid hypothesis of each pair that it may decide, in the pair's own direction.
        k = np.nonzero((score[sl] >= _REFINE_BAND[0]) & (score[sl] < _REFINE_BAND[1]))[0]
        if len(k):
            second = direction[sl][k].astype(bool)
            pick = second[:, None, None]
            src, dst = np.where(pick, b[k], a[k]), np.where(pick, a[k], b[k])
            cells = np.where(pick, target[1][0][k], target[0][0][k])
            energy = np.where(second[:, None], target[1][1][k], target[0][1][k])
            warp = _refine(src, dst, warp_out[sl][k])
            s = _fine(src, cells, energy, warp)
            upd = s > score[sl][k]
            rows = np.arange(sl.start, sl.stop)[k]
            score[rows] = np.where(upd, s, score[rows])
            warp_out[rows] = np.where(upd[:, None, None], warp, warp_out[rows])
            refined[rows] = upd
    return score, Alignment(direction, box_out, angle_out, warp_out, refined)
