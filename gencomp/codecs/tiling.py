"""Cut an image of any size into fixed-size tiles and put it back together, edge to edge or blended.

Tiles are ``tile`` x ``tile`` and start every ``stride = tile - overlap`` pixels from the top left. With
``overlap=0`` they meet edge to edge and :func:`merge_tiles` pastes them back. With ``overlap > 0`` neighbours
share an ``overlap``-px band, and :func:`blend_tiles` (or :func:`blend_rows`, one row of tiles at a time) sums
them under the weights of :func:`blend_weights`: a raised-cosine ramp across each shared band, 1 elsewhere,
so the weights of the tiles covering any pixel sum to 1 (at most two tiles per axis cover a pixel, since
``overlap <= tile / 2``). A seam is then a smooth cross-fade over ``overlap`` pixels instead of a step; an
image's outer edges belong to one tile and are not faded. When the image is a single tile, blending is that
tile.

Padding is by reflection (``numpy.pad`` mode "reflect", which reflects repeatedly when the pad is wider
than the image), so the padded border looks like image content: a generator asked to match it wastes no
effort on an artificial black or constant edge. The padding is cropped away after reassembly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """How an ``height`` x ``width`` image maps onto ``rows`` x ``cols`` tiles of ``tile`` x ``tile`` that
    overlap their neighbours by ``overlap`` px (0: edge to edge)."""

    height: int
    width: int
    tile: int
    overlap: int = 0

    def __post_init__(self):
        if self.height < 1 or self.width < 1 or self.tile < 1:
            raise ValueError(f"need height, width, tile >= 1, got {self}")
        if not 0 <= self.overlap <= self.tile // 2:
            raise ValueError(f"overlap must be 0..{self.tile // 2} (half the {self.tile}-px tile), got {self.overlap}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def _count(self, size: int) -> int:
        return 1 + -(-max(size - self.tile, 0) // self.stride)

    @property
    def rows(self) -> int:
        return self._count(self.height)

    @property
    def cols(self) -> int:
        return self._count(self.width)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def padded_height(self) -> int:
        return (self.rows - 1) * self.stride + self.tile

    @property
    def padded_width(self) -> int:
        return (self.cols - 1) * self.stride + self.tile


def _reflect_pad(image: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    for axis, pad in ((0, pad_h), (1, pad_w)):
        if pad:
            widths = [(0, 0)] * image.ndim
            widths[axis] = (0, pad)
            # "reflect" needs at least 2 samples along the axis; a 1-pixel axis can only be repeated.
            mode = "reflect" if image.shape[axis] >= 2 else "edge"
            image = np.pad(image, widths, mode=mode)
    return image


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad an ``(H, W, ...)`` array at the bottom and right to multiples of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if image.ndim < 2 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (H, W, ...) array with H, W >= 1, got shape {image.shape}")
    h, w = image.shape[:2]
    return _reflect_pad(image, (-h) % multiple, (-w) % multiple)


def split_tiles(image: np.ndarray, tile: int, overlap: int = 0) -> tuple[np.ndarray, TileGrid]:
    """``(H, W, C)`` -> ``(rows * cols, tile, tile, C)`` in row-major order, and the grid to undo it."""
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) array, got shape {image.shape}")
    grid = TileGrid(height=image.shape[0], width=image.shape[1], tile=int(tile), overlap=int(overlap))
    padded = _reflect_pad(image, grid.padded_height - grid.height, grid.padded_width - grid.width)
    channels = image.shape[2]
    if not grid.overlap:
        tiles = (
            padded.reshape(grid.rows, grid.tile, grid.cols, grid.tile, channels)
            .transpose(0, 2, 1, 3, 4)
            .reshape(grid.count, grid.tile, grid.tile, channels)
        )
        return np.ascontiguousarray(tiles), grid
    s, t = grid.stride, grid.tile
    tiles = np.stack([padded[r * s : r * s + t, c * s : c * s + t] for r in range(grid.rows) for c in range(grid.cols)])
    return tiles, grid


def merge_tiles(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Inverse of :func:`split_tiles` for edge-to-edge tiles: reassemble and crop to the original ``(H, W, C)``."""
    if grid.overlap:
        raise ValueError(f"merge_tiles pastes edge-to-edge tiles; blend tiles that overlap ({grid}) with blend_tiles")
    _check_tiles(tiles, grid)
    channels = tiles.shape[3]
    padded = (
        tiles.reshape(grid.rows, grid.cols, grid.tile, grid.tile, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(grid.rows * grid.tile, grid.cols * grid.tile, channels)
    )
    return np.ascontiguousarray(padded[: grid.height, : grid.width])


def _check_tiles(tiles: np.ndarray, grid: TileGrid) -> None:
    if tiles.ndim != 4 or tiles.shape[0] != grid.count or tiles.shape[1:3] != (grid.tile, grid.tile):
        raise ValueError(
            f"expected ({grid.count}, {grid.tile}, {grid.tile}, C) tiles for {grid}, got shape {tiles.shape}"
        )


def _profiles(grid: TileGrid, n: int) -> np.ndarray:
    """``(n, tile)`` float32 weights along one axis for tiles 0..n-1: a raised-cosine ramp up over the band shared
    with the previous tile, down over the band shared with the next (``1 - up``, so each pair sums to 1)."""
    profiles = np.ones((n, grid.tile))
    o = grid.overlap
    if o:
        up = np.sin(0.5 * np.pi * (np.arange(o) + 0.5) / o) ** 2
        profiles[1:, :o] = up
        profiles[:-1, grid.tile - o :] = 1.0 - up
    return profiles.astype(np.float32)


def blend_weights(grid: TileGrid) -> np.ndarray:
    """``(count, tile, tile)`` float32 weights of the tiles in row-major order (the outer product of a row's and
    a column's profile); placed at their tiles, they sum to 1 at every pixel of the padded image."""
    rows, cols = _profiles(grid, grid.rows), _profiles(grid, grid.cols)
    return (rows[:, None, :, None] * cols[None, :, None, :]).reshape(grid.count, grid.tile, grid.tile)


def blend_rows(tiles: Iterable[np.ndarray], grid: TileGrid) -> Iterator[tuple[int, np.ndarray]]:
    """Blend ``(tile, tile, C)`` tiles, given one at a time in row-major order, into the ``(H, W, C)`` image.

    Yields ``(top, rows)``: finished float32 image rows from row ``top`` on, as soon as no later tile touches
    them. Holds one float32 strip of at most ``tile`` x ``W`` pixels and computes each tile's weights when it
    comes, so memory is a few times the 8-bit image's at most, whatever the tile count (decoders rely on it).
    """
    row_profiles, col_profiles = _profiles(grid, grid.rows), _profiles(grid, grid.cols)
    t, s, o = grid.tile, grid.stride, grid.overlap
    strip: np.ndarray | None = None  # image rows row * s .. row * s + tile of the current tile row, cropped
    index = -1
    for index, tile in enumerate(tiles):
        if index >= grid.count:
            raise ValueError(f"more than the {grid.count} tiles of {grid}")
        row, col = divmod(index, grid.cols)
        if strip is None:
            strip = np.zeros((min(t, grid.height), grid.width, tile.shape[2]), dtype=np.float32)
        elif col == 0:  # a new tile row starts `stride` rows lower: the strip's first `stride` rows are done
            yield (row - 1) * s, strip[:s].copy()  # (more than one tile row: the strip is `tile` rows high)
            strip[:o] = strip[s:]
            strip[o:] = 0.0
        x = col * s  # < width: every tile starts inside the image
        h, w = strip.shape[0], min(t, grid.width - x)
        weights = row_profiles[row, :h, None] * col_profiles[col, None, :w]
        strip[:, x : x + w] += weights[:, :, None] * tile[:h, :w]
    if index + 1 != grid.count:
        raise ValueError(f"got {index + 1} tiles, {grid} has {grid.count}")
    top = (grid.rows - 1) * s
    yield top, strip[: grid.height - top].copy()


def blend_tiles(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Inverse of :func:`split_tiles` for any overlap: the weighted sum of the tiles, cropped to ``(H, W, C)``."""
    _check_tiles(tiles, grid)
    return np.concatenate([rows for _, rows in blend_rows(tiles, grid)], axis=0)
