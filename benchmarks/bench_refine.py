"""What encode-time latent refinement buys: RD curves with and without it, and dB gained per second spent.

    python benchmarks/bench_refine.py IMAGES_DIR [--steps 0 20] [--quant-scales 0.7 1.0 1.4 2.0]
                                      [--steps-curve 0 5 10 20 40] [--curve-images 6] [--max-images N]
                                      [--threads 2] [--baselines webp avif] [--precision auto float32 bfloat16]
                                      [--json OUT.json]

For every image, the vaegan codec (C = 28, the default model unless $GENCOMP_VAEGAN_MODEL) encodes at each
quant_scale with each refine_steps; WebP (and with ``--baselines webp avif`` AVIF) is swept over its quality in
the same run as the baseline. Rates are
real file lengths, PSNR and MS-SSIM come from gencomp.metrics. Printed: mean bpp / PSNR / MS-SSIM / encode
seconds per setting, BD-rate (PSNR) of each refinement level against no refinement and against each baseline, and, at
quant_scale 1 on the first ``--curve-images`` images, PSNR and rate against refine_steps (dB per second), once per
``--precision`` of the search (the RD curves use the first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gencomp.bdrate import NoOverlapError, bd_rate
from gencomp.codecs import get_codec
from gencomp.data.images import open_image
from gencomp.metrics import ms_ssim, psnr

BASELINE_QUALITIES = {"webp": (0, 2, 5, 10, 15, 20, 30, 40, 60), "avif": (0, 5, 10, 15, 20, 30, 40, 60)}


def _measure(codec, image) -> dict:
    t0 = time.perf_counter()
    data = codec.encode(image)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = codec.decode(data)
    decode_s = time.perf_counter() - t0
    return {"bpp": len(data) * 8 / (image.width * image.height), "psnr": psnr(image, decoded),
            "ms_ssim": ms_ssim(image, decoded), "encode_s": encode_s, "decode_s": decode_s}


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _bd(test: list[dict], anchor: list[dict]) -> float | None:
    if min(len(test), len(anchor)) < 2:  # one quant_scale is a point, not a curve
        return None
    try:
        return bd_rate([r["bpp"] for r in anchor], [r["psnr"] for r in anchor],
                       [r["bpp"] for r in test], [r["psnr"] for r in test], method="pchip")
    except NoOverlapError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 20])
    ap.add_argument("--quant-scales", type=float, nargs="+", default=[0.7, 1.0, 1.4, 2.0])
    ap.add_argument("--steps-curve", type=int, nargs="*", default=[0, 5, 10, 20, 40])
    ap.add_argument("--curve-images", type=int, default=6)
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baselines", nargs="*", default=["webp"], choices=sorted(BASELINE_QUALITIES))
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    paths = paths[: args.max_images] if args.max_images else paths
    images = [open_image(p) for p in paths]
    print(f"{len(images)} images from {args.images}", flush=True)

    curves: dict[str, list[dict]] = {}
    for steps in args.steps:
        curve = []
        for scale in args.quant_scales:
            codec = get_codec("vaegan-c28", quant_scale=scale, refine_steps=steps, precision=args.precision[0])
            mean = _mean([_measure(codec, im) for im in images])
            curve.append({"quant_scale": scale, **mean})
            print(f"refine_steps={steps:3d} quant_scale={scale:.2f}  bpp {mean['bpp']:.4f}  PSNR {mean['psnr']:.3f}"
                  f"  MS-SSIM {mean['ms_ssim']:.4f}  encode {mean['encode_s']:.2f} s  decode {mean['decode_s']:.2f} s",
                  flush=True)
        curves[f"vaegan-c28 refine_steps={steps}"] = curve
    for base in args.baselines:
        rows = []
        for quality in BASELINE_QUALITIES[base]:
            codec = get_codec(base, quality=quality)
            rows.append({"quality": quality, **_mean([_measure(codec, im) for im in images])})
        curves[base] = rows

    anchor = curves[f"vaegan-c28 refine_steps={args.steps[0]}"]
    summary = {}
    for name, curve in curves.items():
        if name in BASELINE_QUALITIES:
            continue
        summary[name] = {"bd_rate_vs_no_refinement": _bd(curve, anchor),
                         **{f"bd_rate_vs_{base}": _bd(curve, curves[base]) for base in args.baselines}}
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in summary[name].items()), flush=True)

    steps_curve = []
    for precision in args.precision if args.steps_curve else []:
        rows = []
        for steps in args.steps_curve:
            codec = get_codec("vaegan-c28", refine_steps=steps, precision=precision)
            mean = _mean([_measure(codec, im) for im in images[: args.curve_images]])
            rows.append({"precision": precision, "refine_steps": steps, **mean})
        base = rows[0]
        for row in rows:
            spent = row["encode_s"] - base["encode_s"]
            gain = row["psnr"] - base["psnr"]
            row["db_per_s"] = gain / spent if spent > 0 else None
            print(f"{precision:8s} steps {row['refine_steps']:3d}: bpp {row['bpp']:.4f}  PSNR {row['psnr']:.3f} "
                  f"(+{gain:.3f} dB)  encode {row['encode_s']:.2f} s  dB/s {row['db_per_s']}", flush=True)
        steps_curve += rows
    if args.json:
        args.json.write_text(json.dumps({"images": [p.name for p in paths], "curves": curves, "bd": summary,
                                         "steps_curve": steps_curve}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
