"""Shard write MB/s and loader crops/s.

    python benchmarks/bench_shards.py [--images 300] [--size 1280x960] [--crop 64] [--seconds 20]

Builds a corpus of JPEGs (from ../shared/data/photos when present, else scikit-image sample photos) in a
temporary folder, writes clusters.parquet directly (every image kept, so only sharding is timed), then:
1. write_shards: MB of image bytes per second (source files are in the page cache: this times hashing,
   Parquet encoding and the atomic writes, not a cold disk);
2. ShardDataset training crops per second through a DataLoader with 0 and 2 workers, for 1 and for 8
   crops per decoded image, and for downscale_to=512 and None.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gencomp.data.loader import ShardDataset  # noqa: E402
from gencomp.data.shards import write_shards  # noqa: E402


def _sources(limit: int) -> list[Image.Image]:
    photos = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
    paths = sorted(photos.rglob("*.jpg"))[:limit] if photos.is_dir() else []
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    from skimage import data

    return [Image.fromarray(f()) for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)]


def build_corpus(folder: Path, count: int, size: tuple[int, int]) -> Path:
    sources = _sources(64)
    rows = []
    for k in range(count):
        img = sources[k % len(sources)].resize(size, Image.Resampling.BILINEAR)
        if k >= len(sources):
            img = img.rotate(k % 11 - 5)  # distinct bytes
        path = folder / f"{k:05d}.jpg"
        img.save(path, quality=90)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        rows.append(dict(path=path.name, sha256=sha, keep=True, status="ok", cluster_key=sha, width=size[0],
                         height=size[1], format="JPEG", url=f"http://example/{k}.jpg"))
    clusters = folder / "clusters.parquet"
    pd.DataFrame(rows).to_parquet(clusters)
    return clusters


def crops_per_second(shards: Path, *, crop: int, workers: int, per_image: int, downscale_to, seconds: float) -> float:
    ds = ShardDataset(shards, "train", crop=crop, downscale_to=downscale_to, crops_per_image=per_image)
    n, epoch = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=32, num_workers=workers, persistent_workers=False)
        for batch in loader:
            n += batch.shape[0]
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", default="1280x960")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "imgs").mkdir()
        clusters = build_corpus(tmp / "imgs", args.images, size)
        total_mb = sum(p.stat().st_size for p in (tmp / "imgs").glob("*.jpg")) / 1e6
        print(f"## Shards (cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})\n")
        print(f"{args.images} JPEGs at {args.size}, {total_mb:.1f} MB\n")
        print("| step | result |")
        print("|---|---|")
        for run in range(2):
            out = tmp / f"shards{run}"
            t0 = time.perf_counter()
            manifest = write_shards(clusters, tmp / "imgs", out, target_mb=16, split_fractions={"train": 1.0})
            dt = time.perf_counter() - t0
            print(f"| write_shards run {run + 1} ({len(manifest['shards'])} shards of <= 16 MB) | "
                  f"{total_mb / dt:,.0f} MB/s ({dt:.2f} s) |")
        same = [s["sha256"] for s in manifest["shards"]] == [
            s["sha256"] for s in write_shards(clusters, tmp / "imgs", tmp / "shards2", target_mb=16,
                                              split_fractions={"train": 1.0})["shards"]]
        print(f"| byte-identical rerun | {same} |")

        print(f"\n## Loader crops/s (crop {args.crop}, batch 32, {args.seconds:.0f} s each, "
              f"load average {os.getloadavg()[0]:.1f})\n")
        print("| downscale_to | crops per image | DataLoader workers | crops/s |")
        print("|---|---|---|---|")
        for downscale_to in (512, None):
            for per_image in (1, 8):
                for workers in (0, 2):
                    rate = crops_per_second(tmp / "shards0", crop=args.crop, workers=workers, per_image=per_image,
                                            downscale_to=downscale_to, seconds=args.seconds)
                    print(f"| {downscale_to} | {per_image} | {workers} | {rate:,.0f} |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
