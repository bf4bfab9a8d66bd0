"""The default learned codec against WebP (and AVIF) on photos the model never saw, at equal rate.

    python benchmarks/unseen_photos.py SHARDS_DIR OUT_DIR [--max-images 24] [--workers 2]
        [--quant-scales 0.7 1.0 1.4 2.0]

SHARDS_DIR is a photo shard set (``gencomp domains``: the 548 photos at short side 384; the default VAE-GAN was
trained on its train split only), read from its test split at its own size. The grid: the default ``vaegan``
codec (its default model, channels and refinement) swept over ``quant_scale`` for an RD curve, WebP and AVIF
swept over quality, and JPEG (1%). Writes OUT_DIR/results.parquet and OUT_DIR/report/ (rd.csv, bdrate.md ...),
and prints for the default setting (``quant_scale`` 1) the WebP and AVIF quality interpolated at its mean rate
(log-rate, linear between their two nearest points), with the per-image count of wins at that rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gencomp.data.eval_sets import shard_images
from gencomp.evaluate import expand_grid, run_grid, write_results
from gencomp.report import build_report

QUALITIES = [0, 5, 10, 20, 30, 40, 60, 80]


def grid(quant_scales: list[float]) -> list[dict]:
    return [
        {"codec": "vaegan", "sweep": {"quant_scale": quant_scales}, "label": "VAE-GAN (default)",
         "group": "VAE-GAN default, quant_scale", "tables": ["rd"]},
        {"codec": "webp", "sweep": {"quality": QUALITIES}, "tables": ["rd"]},
        {"codec": "avif", "sweep": {"quality": QUALITIES}, "tables": ["rd"]},
        {"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)", "tables": ["table1"]},
    ]


def at_rate(curve: pd.DataFrame, bpp: float, column: str) -> float:
    """``column`` of a classical curve (rows: bpp, column) interpolated at ``bpp`` in log rate; nan outside it."""
    curve = curve.sort_values("bpp")
    x, y = np.log(curve["bpp"].to_numpy()), curve[column].to_numpy()
    if not x[0] <= np.log(bpp) <= x[-1]:
        return float("nan")
    return float(np.interp(np.log(bpp), x, y))


def equal_rate_rows(frame: pd.DataFrame) -> list[str]:
    ok = frame[frame["error"].fillna("") == ""]
    scale = ok["settings"].map(lambda s: json.loads(s).get("quant_scale"))
    ours = ok[(ok["codec"] == "vaegan") & (scale == 1.0)]
    lines = [f"default VAE-GAN (quant_scale 1): {ours['bpp'].mean():.4f} bpp, {ours['psnr'].mean():.2f} dB, "
             f"MS-SSIM {ours['ms_ssim'].mean():.4f} over {len(ours)} images"]
    for anchor in ("webp", "avif"):
        wins = {"psnr": 0, "ms_ssim": 0}
        means = {"psnr": [], "ms_ssim": []}
        counted = 0
        for _, r in ours.iterrows():  # per image: the anchor's own curve on that image, at our rate on it
            curve = ok[(ok["codec"] == anchor) & (ok["image"] == r["image"])]
            values = {m: at_rate(curve, r["bpp"], m) for m in wins}
            if any(np.isnan(v) for v in values.values()):
                continue
            counted += 1
            for m, v in values.items():
                means[m].append(v)
                wins[m] += int(r[m] > v)
        if counted:
            lines.append(
                f"{anchor} at the same rate per image ({counted} images in its range): "
                f"{np.mean(means['psnr']):.2f} dB, MS-SSIM {np.mean(means['ms_ssim']):.4f}; "
                f"VAE-GAN better on {wins['psnr']} (PSNR) and {wins['ms_ssim']} (MS-SSIM) of {counted}")
        else:
            lines.append(f"{anchor}: no image where its curve spans the VAE-GAN's rate")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quant-scales", type=float, nargs="+", default=[0.7, 1.0, 1.4, 2.0])
    args = ap.parse_args(argv)
    if 1.0 not in args.quant_scales:
        ap.error("--quant-scales must include 1.0, the default setting compared at equal rate")
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    photos = {"photos": shard_images(args.shards, "test", max_images=args.max_images)}
    frame = run_grid(expand_grid(grid(args.quant_scales)), photos, cache_dir=args.out / "cache", workers=args.workers)
    write_results(frame, args.out / "results.parquet")
    build_report(frame, args.out / "report", dataset="photos", title="gencomp: unseen photos against WebP and AVIF")
    for line in equal_rate_rows(frame):
        print(line, flush=True)
    print(f"done: {len(frame)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
