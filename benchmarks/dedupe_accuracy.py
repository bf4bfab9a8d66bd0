"""Precision and recall of pHash / dHash near-duplicate detection per transform, at several thresholds.

    python benchmarks/dedupe_accuracy.py [--photos ../shared/data/photos] [--limit N] [--workers 2] [--csv out.csv]

Each photo is first reduced to at most 1024 px on its long side and stored as JPEG q95: that is "the original"
(a scraped photo at web size; full-size 24 Mpx decodes would only make the run slower). Every transform is
applied to the decoded original and stored as JPEG q90 (except the JPEG re-encodes, stored at their own
quality), then hashed through the same path as the pipeline (gencomp.data.hashing.hash_image_bytes).

Per transform T: positives are the pairs (original_i, T(original_i)); negatives are the pairs
(original_i, T(original_j)), i != j. recall = TP / positives, precision = TP / (TP + FP).
Also printed: the false-positive count among all pairs of distinct originals.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gencomp.data.hashing import hash_image_bytes  # noqa: E402
from gencomp.data.images import ImageRejected, open_image  # noqa: E402

THRESHOLDS = (2, 4, 6, 8, 10, 12, 14, 16)
MAX_SIDE = 1024


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _centre_crop(img: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


TRANSFORMS = {
    "resize_50": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), 90),
    "jpeg_q30": lambda im: _jpeg(im, 30),
    "jpeg_q50": lambda im: _jpeg(im, 50),
    "jpeg_q70": lambda im: _jpeg(im, 70),
    "jpeg_q90": lambda im: _jpeg(im, 90),
    "crop_2pct": lambda im: _jpeg(_centre_crop(im, 0.02), 90),
    "crop_5pct": lambda im: _jpeg(_centre_crop(im, 0.05), 90),
    "bright_+10pct": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.10), 90),
    "bright_-10pct": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(0.90), 90),
    "hflip": lambda im: _jpeg(ImageOps.mirror(im), 90),
}


def _one_photo(path: str):
    """(phash, dhash) of the original and of every transform, as uint64; None if the file is unusable."""
    try:
        img = open_image(Path(path))
    except ImageRejected:
        return None
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    original = _jpeg(img, 95)
    base = open_image(original)
    out = {}
    for name, fn in [("original", lambda im: original)] + list(TRANSFORMS.items()):
        row = hash_image_bytes(fn(base))
        out[name] = (np.int64(row["phash"]).view(np.uint64), np.int64(row["dhash"]).view(np.uint64))
    return out


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a[:, None] ^ b[None, :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()

    paths = sorted(str(p) for p in Path(args.photos).rglob("*") if p.is_file())[: args.limit]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = [r for r in pool.map(_one_photo, paths, chunksize=4) if r is not None]
    n = len(results)
    print(f"{n} photos from {args.photos}, {len(TRANSFORMS)} transforms, {time.perf_counter() - t0:.0f} s "
          f"({args.workers} workers)\n")

    rows = []
    for k, kind in enumerate(("phash", "dhash")):
        orig = np.array([r["original"][k] for r in results], dtype=np.uint64)
        d_oo = _dist(orig, orig)[np.triu_indices(n, 1)]
        print(f"## {kind}: recall / precision per transform at threshold t (n = {n} positives per transform)\n")
        print("| transform | " + " | ".join(f"t={t}" for t in THRESHOLDS) + " |")
        print("|---|" + "---|" * len(THRESHOLDS))
        for name in TRANSFORMS:
            moved = np.array([r[name][k] for r in results], dtype=np.uint64)
            d = _dist(orig, moved)
            pos = np.diag(d)
            neg = d[~np.eye(n, dtype=bool)]
            cells = []
            for t in THRESHOLDS:
                tp, fp = int((pos <= t).sum()), int((neg <= t).sum())
                recall, precision = tp / n, tp / (tp + fp) if tp + fp else 1.0
                cells.append(f"{recall:.3f} / {precision:.3f}")
                rows.append((kind, name, t, recall, precision, tp, fp))
            print(f"| {name} | " + " | ".join(cells) + " |")
        fps = " | ".join(str(int((d_oo <= t).sum())) for t in THRESHOLDS)
        print(f"| distinct originals: false pairs of {len(d_oo)} | {fps} |")
        print(f"\n{kind}: median distance positive (jpeg_q70) vs negative: "
              f"{np.median(np.diag(_dist(orig, np.array([r['jpeg_q70'][k] for r in results], dtype=np.uint64)))):.0f}"
              f" vs {np.median(d_oo):.0f}; closest distinct originals: {np.sort(d_oo)[:8].tolist()}\n")
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["hash", "transform", "threshold", "recall", "precision", "tp", "fp"])
            w.writerows(rows)


if __name__ == "__main__":
    main()
