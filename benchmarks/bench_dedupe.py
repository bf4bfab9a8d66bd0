"""Dedupe speed: hashing throughput (with decode) and the near-duplicate join.

    python benchmarks/bench_dedupe.py [--workers 2] [--n-hashes 1000000] [--threshold 10] [--skip-hashing]

1. Hashing: JPEGs at 640x480 and 1920x1080 (made from ../shared/data/photos when present, else from
   scikit-image's sample photos) hashed by gencomp.data.hashing.hash_files (pHash + dHash + sha256 + probe,
   DCT-scaled decode, process pool) vs the naive ``imagehash.phash(Image.open(p))`` in one process.
2. Join: ``n`` uniform random 64-bit hashes plus planted near pairs at distances 0..threshold; time of
   gencomp.data.neardup.hamming_pairs (multi-index) and the recall of the planted pairs; an all-pairs scan
   on 20,000 hashes as the baseline (and a check that both find the same pairs there).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gencomp.data import neardup  # noqa: E402
from gencomp.data.hashing import hash_files  # noqa: E402


def _sources(limit: int) -> list[Image.Image]:
    photos = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
    paths = sorted(p for p in photos.rglob("*.jpg"))[:limit] if photos.is_dir() else []
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    from skimage import data

    return [Image.fromarray(f()) for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)]


def _make_jpegs(folder: Path, sources, size, count) -> list[Path]:
    out = []
    for k in range(count):
        img = sources[k % len(sources)].resize(size, Image.Resampling.BILINEAR)
        if k >= len(sources):  # different bytes for every file
            img = img.rotate(k % 7 - 3)
        p = folder / f"{size[0]}x{size[1]}_{k:04d}.jpg"
        img.save(p, quality=88)
        out.append(p)
    return out


def bench_hashing(workers: int, n_small: int, n_big: int) -> None:
    import imagehash

    print(f"## Hashing throughput (cpu count {os.cpu_count()}, load average before {os.getloadavg()[0]:.1f})\n")
    print("| images | method | images/s |")
    print("|---|---|---|")
    sources = _sources(48)
    with tempfile.TemporaryDirectory() as tmp:
        for size, count in (((640, 480), n_small), ((1920, 1080), n_big)):
            paths = _make_jpegs(Path(tmp), sources, size, count)
            hash_files(paths[:8], workers=1)  # warm caches
            t0 = time.perf_counter()
            frame = hash_files(paths, workers=workers)
            ours = time.perf_counter() - t0
            assert (frame["status"] == "ok").all()
            t0 = time.perf_counter()
            for p in paths:
                imagehash.phash(Image.open(p))
            naive = time.perf_counter() - t0
            label = f"{count} x {size[0]}x{size[1]} JPEG"
            print(f"| {label} | gencomp hash_files (pHash+dHash+sha256, draft decode, {workers} procs) | "
                  f"{count / ours:,.0f} |")
            print(f"| {label} | naive imagehash.phash(Image.open(p)), 1 proc | {count / naive:,.0f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")


def _planted(n: int, pairs: int, threshold: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    a = rng.choice(n, size=pairs, replace=False)
    b = rng.choice(np.setdiff1d(np.arange(n), a), size=pairs, replace=False)
    dist = rng.integers(0, threshold + 1, size=pairs)
    for src, dst, d in zip(a, b, dist):
        flip = np.uint64(0)
        for bit in rng.choice(64, int(d), replace=False):
            flip |= np.uint64(1) << np.uint64(int(bit))
        h[dst] = h[src] ^ flip
    return h, np.minimum(a, b), np.maximum(a, b)


def bench_join(n: int, threshold: int, workers: int) -> None:
    print(f"## Near-duplicate join, threshold {threshold} (load average {os.getloadavg()[0]:.1f})\n")
    print("| hashes | method | blocks | seconds | pairs found | planted recall |")
    print("|---|---|---|---|---|---|")
    for size in (20_000, n):
        h, pa, pb = _planted(size, max(100, size // 100), threshold)
        blocks = neardup.choose_blocks(size, threshold)
        t0 = time.perf_counter()
        i, j, _ = neardup.hamming_pairs(h, threshold, workers=workers)
        dt = time.perf_counter() - t0
        found = set(zip(i.tolist(), j.tolist()))
        recall = np.mean([(x, y) in found for x, y in zip(pa.tolist(), pb.tolist())])
        print(f"| {size:,} | multi-index hashing, {workers} threads | {blocks} | {dt:.1f} | {len(i):,} | "
              f"{recall:.4f} |")
        if size == 20_000:
            t0 = time.perf_counter()
            bi, bj, _ = neardup.hamming_pairs(h, threshold, blocks=0)
            dt = time.perf_counter() - t0
            same = np.array_equal(bi, i) and np.array_equal(bj, j)
            print(f"| {size:,} | all pairs (vectorised XOR+popcount) | - | {dt:.1f} | {len(bi):,} | "
                  f"same pairs: {same} |")
            est = dt * (n / size) ** 2
            print(f"| {n:,} | all pairs, extrapolated (n^2) | - | ~{est:,.0f} | | |")
    t0 = time.perf_counter()
    neardup.cluster_hashes(h, threshold, workers=workers)
    print(f"\ncluster_hashes (join + union-find) on {n:,}: {time.perf_counter() - t0:.1f} s\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-hashes", type=int, default=1_000_000)
    ap.add_argument("--threshold", type=int, default=8)
    ap.add_argument("--n-small", type=int, default=600)
    ap.add_argument("--n-big", type=int, default=120)
    ap.add_argument("--skip-hashing", action="store_true")
    ap.add_argument("--skip-join", action="store_true")
    args = ap.parse_args()
    if not args.skip_hashing:
        bench_hashing(args.workers, args.n_small, args.n_big)
    if not args.skip_join:
        for threshold in sorted({args.threshold, 10}):
            bench_join(args.n_hashes, threshold, args.workers)


if __name__ == "__main__":
    main()
