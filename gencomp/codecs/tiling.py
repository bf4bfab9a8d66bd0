"""Cut an image of any size into fixed-size tiles and put it back together.

Padding is by reflection (``numpy.pad`` mode "reflect", which reflects repeatedly when the pad is wider
than the image), so the padded border looks like image content: a generator asked to match it wastes no
effort on an artificial black or constant edge. The padding is cropped away after reassembly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """How an ``height`` x ``width`` image maps onto ``rows`` x ``cols`` tiles of ``tile`` x ``tile``."""

    height: int
    width: int
    tile: int

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile)

    @property
    def count(self) -> int:
        return self.rows * self.cols


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad an ``(H, W, ...)`` array at the bottom and right to multiples of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if image.ndim < 2 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (H, W, ...) array with H, W >= 1, got shape {image.shape}")
    h, w = image.shape[:2]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not pad_h and not pad_w:
        return image
    for axis, pad in ((0, pad_h), (1, pad_w)):
        if pad:
            widths = [(0, 0)] * image.ndim
            widths[axis] = (0, pad)
            # "reflect" needs at least 2 samples along the axis; a 1-pixel axis can only be repeated.
            mode = "reflect" if image.shape[axis] >= 2 else "edge"
            image = np.pad(image, widths, mode=mode)
    return image


def split_tiles(image: np.ndarray, tile: int) -> tuple[np.ndarray, TileGrid]:
    """``(H, W, C)`` -> ``(rows * cols, tile, tile, C)`` in row-major order, and the grid to undo it."""
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) array, got shape {image.shape}")
    grid = TileGrid(height=image.shape[0], width=image.shape[1], tile=int(tile))
    padded = pad_to_multiple(image, grid.tile)
    channels = image.shape[2]
    tiles = (
        padded.reshape(grid.rows, grid.tile, grid.cols, grid.tile, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(grid.count, grid.tile, grid.tile, channels)
    )
    return np.ascontiguousarray(tiles), grid


def merge_tiles(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Inverse of :func:`split_tiles`: reassemble and crop to the original ``(H, W, C)``."""
    if tiles.ndim != 4 or tiles.shape[0] != grid.count or tiles.shape[1:3] != (grid.tile, grid.tile):
        raise ValueError(
            f"expected ({grid.count}, {grid.tile}, {grid.tile}, C) tiles for {grid}, got shape {tiles.shape}"
        )
    channels = tiles.shape[3]
    padded = (
        tiles.reshape(grid.rows, grid.cols, grid.tile, grid.tile, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(grid.rows * grid.tile, grid.cols * grid.tile, channels)
    )
    return np.ascontiguousarray(padded[: grid.height, : grid.width])
