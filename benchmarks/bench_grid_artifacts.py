"""Periodic artefacts on each codec's grid, on real photos: gencomp.grid_artifacts.grid_pattern per codec.

    python benchmarks/bench_grid_artifacts.py IMAGES_DIR [--max-images 6] [--crop 512]
                                              [--periods 2 4 16 64] [--gan-steps 10] [--gan-overlaps 0]
                                              [--only-gan] [--json OUT.json]

Each image is centre-cropped to ``--crop`` px (0: whole image), coded by each codec, and the repeating part of
the coding error is measured on grids of each period (the VAE-GAN's sub-pixel phases 2 and 4 px and its 16-px
latent grid; the GAN's 64-px tiles; WebP's and AVIF's blocks). Printed per codec and period: the mean and the
largest ``pattern`` (grey levels, chance removed) over the images. The generative codecs use the shipped
models unless $GENCOMP_VAEGAN_MODEL / $GENCOMP_GAN_MODEL say otherwise.

GAN inversion is then run once per ``--gan-overlaps`` value (px shared by neighbouring tiles, blended; ``8:6``
is 8 px with 6-bit latents, else float32: overlap costs latents, fewer bits pay for them), and a second table
compares them per image set: the pattern on the tile grid (``tile`` px) and on the grid the tiles
actually sit on (``tile - overlap`` px: where blended tiles would leave any seam), a control (the mean pattern
on periods 45, 53 and 59 px, odd and unrelated to any grid: what content leaves at this image size), PSNR, bits
per pixel and compression ratio (24 / bpp, header included) and encode seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gencomp.codecs import get_codec
from gencomp.data.images import open_image
from gencomp.grid_artifacts import grid_pattern

CONTROL_PERIODS = (45, 53, 59)


def _crop(image, size: int):
    if not size or min(image.size) <= size:
        return image
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _psnr(original, decoded) -> float:
    mse = np.mean((np.asarray(original, dtype=np.float64) - np.asarray(decoded, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def _gan_overlap_row(images, steps: int, overlap: int, bits: int) -> dict[str, float]:
    codec = get_codec("gan-inversion", steps=steps, overlap=overlap, bits=bits)
    tile = codec.loaded.generator.tile
    found: dict[str, list[float]] = {"tile": [], "stride": [], "control": [], "psnr": [], "bpp": [], "encode_s": []}
    for image in images:
        start = time.perf_counter()
        data = codec.encode(image)
        found["encode_s"].append(time.perf_counter() - start)
        decoded = codec.decode(data)
        found["tile"].append(grid_pattern(image, decoded, tile).pattern)
        found["stride"].append(grid_pattern(image, decoded, tile - overlap).pattern)
        found["control"].append(float(np.mean([grid_pattern(image, decoded, p).pattern for p in CONTROL_PERIODS])))
        found["psnr"].append(_psnr(image, decoded))
        found["bpp"].append(8 * len(data) / (image.width * image.height))
    row = {key: float(np.mean(values)) for key, values in found.items()}
    row["max_stride"] = float(np.max(found["stride"]))
    row["cr"] = 24.0 / row["bpp"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--max-images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--periods", type=int, nargs="+", default=[2, 4, 16, 64])
    ap.add_argument("--gan-steps", type=int, default=10, help="gan-inversion search steps (0: leave it out)")
    ap.add_argument("--gan-overlaps", nargs="+", default=["0"],
                    help="gan-inversion tile overlaps to compare, px or px:bits (default bits: 32)")
    ap.add_argument("--only-gan", action="store_true", help="leave out the classical and VAE-GAN codecs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    images = [_crop(open_image(p), args.crop) for p in paths[: args.max_images]]
    codecs = {} if args.only_gan else {
        "vaegan-c28 (refine_steps=0)": get_codec("vaegan-c28", refine_steps=0),
        "vaegan-c28 (default refinement)": get_codec("vaegan-c28"),
        "webp q20": get_codec("webp", quality=20),
        "avif q20": get_codec("avif", quality=20),
        "jpeg q5": get_codec("jpeg", quality=5),
    }
    if args.gan_steps and not args.only_gan:
        codecs[f"gan-inversion ({args.gan_steps} steps)"] = get_codec("gan-inversion", steps=args.gan_steps)
    results: dict[str, dict[int, list[float]]] = {}
    for name, codec in codecs.items():
        found = {p: [] for p in args.periods}
        for image in images:
            decoded = codec.decode(codec.encode(image))
            for period in args.periods:
                found[period].append(grid_pattern(image, decoded, period).pattern)
        results[name] = found
        cells = "  ".join(f"{p:>2} px: {np.mean(v):.2f} (max {np.max(v):.2f})" for p, v in found.items())
        print(f"{name:34s} {cells}", flush=True)
    overlaps: dict[str, dict[str, float]] = {}
    if args.gan_steps:
        print(f"gan-inversion, {args.gan_steps} steps, {len(images)} images: means (pattern in grey levels)")
        print(f"{'overlap':>7} {'bits':>4} {'tile':>5} {'stride':>6} {'(max)':>6} {'control':>7} {'PSNR':>6} {'bpp':>6} "
              f"{'CR':>6} {'enc s':>6}")
        for spec in args.gan_overlaps:
            overlap, _, bits = spec.partition(":")
            row = overlaps[spec] = _gan_overlap_row(images, args.gan_steps, int(overlap), int(bits or 32))
            print(f"{overlap:>7} {bits or 32:>4} {row['tile']:5.2f} {row['stride']:6.2f} {row['max_stride']:6.2f} {row['control']:7.2f} "
                  f"{row['psnr']:6.2f} {row['bpp']:6.3f} {row['cr']:6.1f} {row['encode_s']:6.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"images": [p.name for p in paths[: args.max_images]], "crop": args.crop,
                                         "pattern_grey_levels": results, "gan_steps": args.gan_steps,
                                         "gan_overlaps": overlaps}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
