"""ShardDataset: each image once per epoch over ranks x workers, reproducible order, resize rule, eval path."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gencomp.data import loader, shards

torch.set_num_threads(1)


def _colour(k: int) -> tuple[int, int, int]:
    return (40 + 20 * (k % 10), 40 + 20 * (k // 10 % 10), 200)


def _build(tmp_path, count=48, row_group_rows=4, sizes=None, split=None, name="shards"):
    """Shards of flat-coloured PNGs (a crop's colour names its image); clusters.parquet written directly."""
    imgs = tmp_path / "imgs"
    imgs.mkdir(exist_ok=True)
    rows = []
    for k in range(count):
        w, h = sizes[k % len(sizes)] if sizes else (90 + k % 7 * 10, 70 + k % 5 * 10)
        path = imgs / f"{k:03d}.png"
        Image.new("RGB", (w, h), _colour(k)).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(dict(path=path.name, sha256=sha, keep=True, status="ok", cluster_key=sha, width=w, height=h,
                         format="PNG", url=""))
    pd.DataFrame(rows).to_parquet(tmp_path / "clusters.parquet")
    fractions = split or {"train": 0.8, "val": 0.1, "test": 0.1}
    shards.write_shards(tmp_path / "clusters.parquet", imgs, tmp_path / name, row_group_rows=row_group_rows,
                        split_fractions=fractions)
    return tmp_path / name


def _identity(crop: torch.Tensor) -> tuple[int, int, int]:
    return tuple(int(v) for v in (crop.mean(dim=(1, 2)) * 255).round())


def _expected(shards_dir, split):
    return sorted(tuple(np.asarray(img)[0, 0].tolist()) for _, img in loader.iter_split_images(shards_dir, split))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("loader"))


def test_two_ranks_two_workers_see_every_train_image_exactly_once(shard_dir):
    seen = []
    for rank in range(2):
        ds = loader.ShardDataset(shard_dir, "train", crop=32, seed=3, rank=rank, world_size=2, downscale_to=64)
        ds.set_epoch(1)
        for batch in DataLoader(ds, batch_size=5, num_workers=2):
            assert batch.dtype == torch.float32 and batch.shape[1:] == (3, 32, 32)
            assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
            seen.extend(_identity(c) for c in batch)
    assert sorted(seen) == _expected(shard_dir, "train")
    assert len(seen) == loader.split_counts(shard_dir)["train"]


def test_consumer_assignments_partition_the_split(shard_dir):
    for world, workers in ((1, 1), (2, 2), (3, 4), (8, 4)):  # (8, 4): more consumers than row groups
        taken = []
        for rank in range(world):
            ds = loader.ShardDataset(shard_dir, "train", rank=rank, world_size=world)
            for w in range(workers):
                for file, group, rows in ds.assignment(w, workers):
                    n = [u for u in ds.units if u[:2] == (file, group)][0][2]
                    taken.extend((file, group, r) for r in (range(n) if rows is None else rows))
        assert len(taken) == len(set(taken)) == ds.num_images


def test_train_order_is_reproducible_and_changes_with_epoch(shard_dir):
    def run(epoch, seed=0):
        ds = loader.ShardDataset(shard_dir, "train", crop=24, seed=seed, downscale_to=48)
        ds.set_epoch(epoch)
        return [_identity(c) for c in ds]

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert run(0) != run(0, seed=1)
    assert sorted(run(0)) == sorted(run(1))


def test_eval_mode_is_fixed_order_centre_crop(tmp_path):
    shard_dir = _build(tmp_path, count=12, split={"train": 0.5, "val": 0.5})
    a = [_identity(c) for c in loader.ShardDataset(shard_dir, "val", crop=16, train=False)]
    ds = loader.ShardDataset(shard_dir, "val", crop=16, train=False, seed=9)
    ds.set_epoch(5)
    assert a == [_identity(c) for c in ds]
    assert a == [tuple(np.asarray(img)[0, 0].tolist()) for _, img in loader.iter_split_images(shard_dir, "val")]
    assert len(a) == loader.split_counts(shard_dir)["val"] > 0


def test_random_crops_flip_and_stay_inside(tmp_path):
    ramp = np.tile(np.arange(0, 240, 2, dtype=np.uint8), (80, 1))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.stack([ramp] * 3, axis=-1)).save(imgs / "ramp.png")
    sha = hashlib.sha256((imgs / "ramp.png").read_bytes()).hexdigest()
    pd.DataFrame([dict(path="ramp.png", sha256=sha, keep=True, status="ok", cluster_key=sha, width=120, height=80,
                       format="PNG", url="")]).to_parquet(tmp_path / "c.parquet")
    shards.write_shards(tmp_path / "c.parquet", imgs, tmp_path / "s", split_fractions={"train": 1.0})
    ds = loader.ShardDataset(tmp_path / "s", crop=32, downscale_to=None, crops_per_image=40)
    rising = [bool(c[0, 0, -1] > c[0, 0, 0]) for c in ds]
    assert len(rising) == 40 and 5 < sum(rising) < 35  # about half are flipped


def test_crops_of_one_image_are_spread_over_the_stream(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rows = []
    for i in range(24):  # one flat grey level per image, so a crop tells which image it came from
        path = imgs / f"{i}.png"
        Image.fromarray(np.full((40, 40, 3), 10 * i, dtype=np.uint8)).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(dict(path=path.name, sha256=sha, keep=True, status="ok", cluster_key=sha, width=40, height=40,
                         format="PNG", url=""))
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    shards.write_shards(tmp_path / "c.parquet", imgs, tmp_path / "s", split_fractions={"train": 1.0})

    def sources(epoch: int) -> list[int]:
        ds = loader.ShardDataset(tmp_path / "s", crop=16, downscale_to=None, crops_per_image=4)
        ds.set_epoch(epoch)
        return [round(float(c[0, 0, 0]) * 255 / 10) for c in ds]

    order = sources(0)
    assert sorted(order) == sorted(list(range(24)) * 4)  # every crop exactly once
    same_as_previous = sum(a == b for a, b in zip(order, order[1:]))
    assert same_as_previous < 24  # unmixed, 3 of every 4 neighbours would share an image (72)
    assert sources(0) == order and sources(1) != order  # a function of (seed, epoch): resume replays it


def test_resize_rule():
    big = Image.new("RGB", (2000, 1000))
    assert loader.fit_short_side(big, crop=64, downscale_to=512).size == (1024, 512)
    assert loader.fit_short_side(big, crop=64, downscale_to=None).size == (2000, 1000)
    small = Image.new("RGB", (50, 30))
    assert loader.fit_short_side(small, crop=64, downscale_to=512).size == (107, 64)
    assert loader.fit_short_side(small, crop=16, downscale_to=512).size == (50, 30)


def test_small_images_are_upscaled_to_the_crop(tmp_path):
    shard_dir = _build(tmp_path, count=10, sizes=[(20, 12)], split={"train": 1.0})
    crops = list(loader.ShardDataset(shard_dir, crop=32))
    assert len(crops) == 10 and all(c.shape == (3, 32, 32) for c in crops)


def test_bad_splits_are_refused(tmp_path):
    shard_dir = _build(tmp_path, count=6, split={"train": 1.0, "val": 0.0})
    with pytest.raises(ValueError, match="no images"):
        loader.ShardDataset(shard_dir, "val")
    with pytest.raises(ValueError, match="unknown split"):
        loader.ShardDataset(shard_dir, "holdout")
    with pytest.raises(FileNotFoundError):
        loader.ShardDataset(tmp_path / "nothing", "train")
    assert loader.split_counts(shard_dir) == {"train": 6, "val": 0}


def test_resampling_only_the_crop_window_matches_resize_then_crop():
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).resize((800, 600), Image.Resampling.BICUBIC)
    for downscale_to, crop in ((256, 64), (None, 64), (1000, 700)):
        size = loader.target_size(img.size, crop=crop, downscale_to=downscale_to)
        full = np.asarray(loader.fit_short_side(img, crop=crop, downscale_to=downscale_to), dtype=np.int16)
        assert full.shape[:2] == (size[1], size[0])
        for x, y in ((0, 0), (size[0] - crop, size[1] - crop), ((size[0] - crop) // 2, min(7, size[1] - crop))):
            window = np.asarray(loader.crop_resized(img, x, y, crop, size), dtype=np.int16)
            diff = np.abs(window - full[y : y + crop, x : x + crop])
            assert diff.mean() < 0.01 and diff.max() <= 2  # rounding only


def test_a_pass_of_several_epochs_is_those_epochs_back_to_back(shard_dir):
    """set_epochs(first, count) yields exactly what set_epoch(first), ..., set_epoch(first + count - 1) would,
    so a loader that keeps its workers across epochs sees the same data as one restarted every epoch."""
    def crops(ds):
        return torch.stack(list(ds))

    ds = loader.ShardDataset(shard_dir, "train", crop=16, crops_per_image=3)
    one_by_one = []
    for epoch in (4, 5, 6):
        ds.set_epoch(epoch)
        one_by_one.append(crops(ds))
    ds.set_epochs(4, 3)
    torch.testing.assert_close(crops(ds), torch.cat(one_by_one), rtol=0, atol=0)
    with pytest.raises(ValueError, match="count"):
        ds.set_epochs(0, 0)


def test_batch_stream_resumes_mid_pass_with_workers(shard_dir):
    """The resume position (first epoch of the pass, batches into it) replays the same batches with 2 workers."""
    from gencomp.train.loop import BatchStream

    def stream(**position):
        ds = loader.ShardDataset(shard_dir, "train", crop=16, crops_per_image=2)
        return BatchStream(ds, batch_size=4, num_workers=2, seed=0, rank=0, epochs_per_pass=3, **position)

    per_pass = loader.split_counts(shard_dir)["train"] * 2 * 3 // 4  # crops of 3 epochs, in batches of 4
    total, cut = 2 * per_pass + 3, per_pass + per_pass // 2  # the cut falls inside the second pass
    whole = stream()
    reference = [whole.next() for _ in range(total)]
    assert whole.epoch >= 3  # crossed at least one pass
    first = stream()
    for _ in range(cut):
        first.next()
    assert first.epoch == 3 and first.batches > 0
    resumed = stream(epoch=first.epoch, batches=first.batches)
    for expected in reference[cut:]:
        torch.testing.assert_close(resumed.next(), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="set_epochs"):
        BatchStream([torch.zeros(3, 4, 4)], batch_size=1, num_workers=0, seed=0, rank=0, epochs_per_pass=2)
