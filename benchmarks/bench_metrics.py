"""Cost of each quality measure per image pair, and of the data set's SWD, on 768x512 images.

    python benchmarks/bench_metrics.py [--images DIR] [--count N] [--repeat N] [--threads N] [--json OUT.json]

Each image of ``--images`` (default: the Kodak folder at ../shared/data/kodak when present, else scikit-image's
astronaut resized to 768x512) is compared with its JPEG (quality 20) reconstruction. Every measure runs
``--repeat`` times per image; the table gives the median milliseconds per image pair and the mean value, PSNR,
SSIM and MS-SSIM (the measures the grid already computed) as the baseline of the same run. ``swd descriptors``
is the cost of one image's patch descriptors (the grid computes them once per reconstruction and once per
original); ``swd (per image)`` includes both; ``swd_set`` is the set-level distance over all the images from
their stored descriptors.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gencomp import metrics, perceptual  # noqa: E402


def _images(folder: Path | None, count: int) -> list[np.ndarray]:
    if folder is not None and folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:count]
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    from skimage import data

    return [np.asarray(Image.fromarray(data.astronaut()).resize((768, 512), Image.Resampling.LANCZOS))]


def _jpeg(image: np.ndarray, quality: int = 20) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ROOT.parent / "shared" / "data" / "kodak"
    parser.add_argument("--images", type=Path, default=default if default.is_dir() else None)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (PSNR/SSIM/MS-SSIM use torch)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    originals = _images(args.images, args.count)
    pairs = [(a, _jpeg(a)) for a in originals]
    measures = {
        "psnr": metrics.psnr,
        "ssim": metrics.ssim,
        "ms_ssim": metrics.ms_ssim,
        "haarpsi": perceptual.haarpsi,
        "gmsd": perceptual.gmsd,
        "vif": perceptual.vif,
        "swd (per image)": perceptual.swd,
        "swd descriptors": lambda a, b: float(perceptual.swd_descriptors(b).shape[0]),
    }
    rows = []
    for name, fn in measures.items():
        fn(*pairs[0])  # warm-up
        times, values = [], []
        for a, b in pairs:
            for _ in range(args.repeat):
                start = time.perf_counter()
                value = fn(a, b)
                times.append(1000 * (time.perf_counter() - start))
            values.append(value)
        rows.append({"measure": name, "ms_per_image": statistics.median(times), "mean_value": float(np.mean(values))})

    stored = [(perceptual.swd_descriptors(a), perceptual.swd_descriptors(b)) for a, b in pairs]
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        value = perceptual.swd_sets([o for o, _ in stored], [r for _, r in stored])
        times.append(1000 * (time.perf_counter() - start))
    rows.append({"measure": f"swd_set ({len(pairs)} images)", "ms_per_image": statistics.median(times) / len(pairs),
                 "mean_value": value})  # fmt: skip

    size = f"{originals[0].shape[1]}x{originals[0].shape[0]}"
    print(f"{len(pairs)} image(s) of {size} from {args.images or 'skimage astronaut'}, JPEG q20 reconstructions, "
          f"median of {args.repeat} runs each")  # fmt: skip
    print(f"{'measure':26s} {'ms / image':>10s} {'mean value':>12s}")
    for row in rows:
        print(f"{row['measure']:26s} {row['ms_per_image']:10.1f} {row['mean_value']:12.4f}")
    if args.json:
        args.json.write_text(json.dumps({"images": len(pairs), "size": size, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
