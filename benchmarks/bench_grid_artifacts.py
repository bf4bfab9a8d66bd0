"""Periodic artefacts on each codec's grid, on real photos: gencomp.grid_artifacts.grid_pattern per codec.

    python benchmarks/bench_grid_artifacts.py IMAGES_DIR [--max-images 6] [--crop 512]
                                              [--periods 2 4 16 64] [--gan-steps 10] [--json OUT.json]

Each image is centre-cropped to ``--crop`` px (0: whole image), coded by each codec, and the repeating part of
the coding error is measured on grids of each period (the VAE-GAN's sub-pixel phases 2 and 4 px and its 16-px
latent grid; the GAN's 64-px tiles; WebP's and AVIF's blocks). Printed per codec and period: the mean and the
largest ``pattern`` (grey levels, chance removed) over the images. The generative codecs use the shipped
models unless $GENCOMP_VAEGAN_MODEL / $GENCOMP_GAN_MODEL say otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gencomp.codecs import get_codec
from gencomp.data.images import open_image
from gencomp.grid_artifacts import grid_pattern


def _crop(image, size: int):
    if not size or min(image.size) <= size:
        return image
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--max-images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--periods", type=int, nargs="+", default=[2, 4, 16, 64])
    ap.add_argument("--gan-steps", type=int, default=10, help="gan-inversion search steps (0: leave it out)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    images = [_crop(open_image(p), args.crop) for p in paths[: args.max_images]]
    codecs = {
        "vaegan-c28 (refine_steps=0)": get_codec("vaegan-c28", refine_steps=0),
        "vaegan-c28 (default refinement)": get_codec("vaegan-c28"),
        "webp q20": get_codec("webp", quality=20),
        "avif q20": get_codec("avif", quality=20),
        "jpeg q5": get_codec("jpeg", quality=5),
    }
    if args.gan_steps:
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
    if args.json:
        args.json.write_text(json.dumps({"images": [p.name for p in paths[: args.max_images]], "crop": args.crop,
                                         "pattern_grey_levels": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
