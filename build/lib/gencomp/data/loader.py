"""Training crops and evaluation images from the Parquet shards of :mod:`gencomp.data.shards`.

:class:`ShardDataset` is a torch ``IterableDataset`` of float32 crops ``(3, crop, crop)`` in [0, 1]. The row
groups of one split (each holds one split only, see the shard manifest) are dealt out over every
(DDP rank x DataLoader worker) consumer, so in one epoch every image is read by exactly one consumer. When
there are fewer row groups than consumers, single rows are dealt out instead (each consumer then reads only
the row groups holding its rows).

Training order (``train=True``): the row-group order is a permutation drawn from ``(seed, epoch)``, the same
on every consumer, so the deal is consistent; rows within a row group are shuffled, and crop positions and
flips drawn, from ``(seed, epoch, rank, worker)``. Rows are stored in sha256 order, which is unrelated to
content, so a row group is already a random sample of its split. ``train=False`` gives a fixed order and a
centre crop.

Passes of several epochs (:meth:`ShardDataset.set_epochs`): one iteration can run ``count`` epochs back to
back, each in exactly the order it would have alone. A DataLoader's workers start, fill their shuffle buffers
and prefetch once per pass instead of once per epoch: on a GPU with a small corpus an epoch lasts about a
second, and restarting 8 workers every epoch left an H200 under 20 % busy for 36-45 % of a run.

Every image is decoded by :func:`gencomp.data.images.open_image`. When ``downscale_to`` is set, JPEGs decode
by DCT scaling to at least ``downscale_to`` on both sides, and the image is resized (Lanczos) so that its short
side is ``downscale_to``; images whose short side is below ``crop`` are upscaled to ``crop``. Only the crop
window is ever resampled (:func:`crop_resized`), which gives the pixels of "resize, then crop" without
resizing the whole photo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from gencomp.data.images import open_image
from gencomp.data.shards import read_manifest


SHUFFLE_BUFFER_IMAGES = 16  # training crops are mixed over this many images' worth when crops_per_image > 1


def split_counts(shards_dir: str | Path) -> dict[str, int]:
    """Images per split, from the shard manifest."""
    return dict(read_manifest(shards_dir)["split_counts"])


def _split_units(shards_dir: Path, split: str) -> list[tuple[str, int, int]]:
    """``(file, row_group, rows)`` of every row group of ``split``, in manifest order."""
    manifest = read_manifest(shards_dir)
    if split not in manifest["split_fractions"]:
        raise ValueError(f"unknown split {split!r}; {shards_dir} has {list(manifest['split_fractions'])}")
    return [
        (shard["file"], g, group["rows"])
        for shard in manifest["shards"]
        for g, group in enumerate(shard["row_groups"])
        if group["split"] == split
    ]


def iter_split_images(shards_dir: str | Path, split: str) -> Iterator[tuple[str, Image.Image]]:
    """``(sha256, full RGB image)`` of every image of ``split``, in the shards' fixed order (for evaluation)."""
    shards_dir = Path(shards_dir)
    for file, group, _ in _split_units(shards_dir, split):
        table = pq.ParquetFile(shards_dir / file).read_row_group(group, columns=["image", "sha256", "split"])
        for data, sha, row_split in zip(*(table.column(c).to_pylist() for c in ("image", "sha256", "split"))):
            if row_split == split:
                yield sha, open_image(data)


def target_size(size: tuple[int, int], *, crop: int, downscale_to: int | None) -> tuple[int, int]:
    """The (width, height) an image of ``size`` is resized to: short side at most ``downscale_to`` (None: no
    limit) and at least ``crop``, aspect ratio kept."""
    w, h = size
    short = min(w, h)
    target = short if downscale_to is None else min(short, downscale_to)
    target = max(target, crop)
    if target == short:
        return w, h
    scale = target / short
    return max(crop, round(w * scale)), max(crop, round(h * scale))


def fit_short_side(img: Image.Image, *, crop: int, downscale_to: int | None) -> Image.Image:
    """The whole image resized (Lanczos) to :func:`target_size`."""
    size = target_size(img.size, crop=crop, downscale_to=downscale_to)
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def crop_resized(img: Image.Image, x: int, y: int, crop: int, size: tuple[int, int]) -> Image.Image:
    """The ``crop`` x ``crop`` window at ``(x, y)`` of ``img`` resized to ``size``, computed by resampling only
    that window (Pillow's ``box``): the same Lanczos filter as resizing the whole image, at a fraction of the
    cost when one small crop is taken from a large photo."""
    if size == img.size:
        return img.crop((x, y, x + crop, y + crop))
    sx, sy = img.width / size[0], img.height / size[1]
    box = (x * sx, y * sy, min(img.width, (x + crop) * sx), min(img.height, (y + crop) * sy))  # no float overshoot
    return img.resize((crop, crop), Image.Resampling.LANCZOS, box=box)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """HxWx3 uint8 image -> float32 tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


class ShardDataset(IterableDataset):
    """Crops of one split of a shards folder; see the module docstring for order, sharding and resizing.

    ``crops_per_image`` (training only) takes several random crops from each decoded image, to amortise the
    decode when it dominates; the default 1 gives one crop per image per epoch.
    """

    def __init__(
        self,
        shards_dir: str | Path,
        split: str = "train",
        *,
        crop: int = 64,
        train: bool = True,
        seed: int = 0,
        downscale_to: int | None = 512,
        rank: int | None = None,
        world_size: int | None = None,
        crops_per_image: int = 1,
    ):
        super().__init__()
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        if downscale_to is not None and downscale_to < 1:
            raise ValueError(f"downscale_to must be >= 1 or None, got {downscale_to}")
        if crops_per_image < 1:
            raise ValueError(f"crops_per_image must be >= 1, got {crops_per_image}")
        self.shards_dir = Path(shards_dir)
        self.split = split
        self.units = _split_units(self.shards_dir, split)
        self.num_images = sum(rows for _, _, rows in self.units)
        if self.num_images == 0:
            raise ValueError(f"split {split!r} of {self.shards_dir} has no images")
        if rank is None or world_size is None:
            dist_ok = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank = rank if rank is not None else (torch.distributed.get_rank() if dist_ok else 0)
            world_size = world_size if world_size is not None else (
                torch.distributed.get_world_size() if dist_ok else 1)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.crop = crop
        self.train = train
        self.seed = seed
        self.downscale_to = downscale_to
        self.rank = rank
        self.world_size = world_size
        self.crops_per_image = crops_per_image if train else 1
        self.epoch = 0
        self.epochs = 1

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's order (call before creating the DataLoader iterator)."""
        self.set_epochs(epoch, 1)

    def set_epochs(self, first: int, count: int) -> None:
        """The next iteration runs epochs ``first .. first + count - 1``, each in its own order."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.epoch, self.epochs = int(first), int(count)

    def assignment(self, worker_id: int, num_workers: int,
                   epoch: int | None = None) -> list[tuple[str, int, list[int] | None]]:
        """The ``(file, row_group, rows or None for all)`` this consumer reads in ``epoch`` (default: the
        current one), in reading order."""
        epoch = self.epoch if epoch is None else epoch
        total = self.world_size * num_workers
        consumer = self.rank * num_workers + worker_id
        order = list(range(len(self.units)))
        if self.train:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units)).tolist()
        if len(self.units) >= total:
            return [(self.units[u][0], self.units[u][1], None) for u in order[consumer::total]]
        # Fewer row groups than consumers: deal single rows, keeping them grouped by row group for reading.
        flat = [(u, r) for u in order for r in range(self.units[u][2])]
        mine: dict[int, list[int]] = {}
        for u, r in flat[consumer::total]:
            mine.setdefault(u, []).append(r)
        return [(self.units[u][0], self.units[u][1], rows) for u, rows in mine.items()]

    def _crops(self, img: Image.Image, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        c = self.crop
        size = target_size(img.size, crop=c, downscale_to=self.downscale_to)
        if not self.train:
            yield to_tensor(crop_resized(img, (size[0] - c) // 2, (size[1] - c) // 2, c, size))
            return
        for _ in range(self.crops_per_image):
            y = int(rng.integers(0, size[1] - c + 1))
            x = int(rng.integers(0, size[0] - c + 1))
            patch = np.asarray(crop_resized(img, x, y, c, size), dtype=np.uint8)
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            yield torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))).float().div_(255.0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        files: dict[str, pq.ParquetFile] = {}
        for epoch in range(self.epoch, self.epoch + self.epochs):
            yield from self._epoch(epoch, worker_id, num_workers, files)

    def _epoch(self, epoch: int, worker_id: int, num_workers: int,
               files: dict[str, pq.ParquetFile]) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker_id])
        side = max(self.downscale_to, self.crop) if self.downscale_to is not None else None
        draft = (side, side) if side is not None else None  # DCT-scaled decode never below what is kept
        # Several crops of one image would otherwise sit side by side in a batch: a batch of 8 with 4 crops per
        # image would hold 2 images, and the GAN discriminator's minibatch-stddev groups of 4 would each see
        # one image. A shuffle buffer of SHUFFLE_BUFFER_IMAGES images' crops spreads them; it draws from the
        # same seeded rng, so the order stays a function of (seed, epoch, rank, worker) and resume still works.
        mixing = self.train and self.crops_per_image > 1
        buffer: list[torch.Tensor] | None = [] if mixing else None
        buffer_size = SHUFFLE_BUFFER_IMAGES * self.crops_per_image
        for file, group, rows in self.assignment(worker_id, num_workers, epoch):
            pf = files.get(file) or files.setdefault(file, pq.ParquetFile(self.shards_dir / file))
            images = pf.read_row_group(group, columns=["image"]).column("image")
            index = list(range(len(images))) if rows is None else list(rows)
            if self.train:
                index = [index[k] for k in rng.permutation(len(index))]
            for k in index:
                img = open_image(images[k].as_py(), draft_size=draft)
                for crop in self._crops(img, rng):
                    if buffer is None:
                        yield crop
                    elif len(buffer) < buffer_size:
                        buffer.append(crop)
                    else:  # emit a random buffered crop, keep the new one in its place
                        j = int(rng.integers(len(buffer)))
                        buffer[j], crop = crop, buffer[j]
                        yield crop
        if buffer:
            for j in rng.permutation(len(buffer)):
                yield buffer[j]
