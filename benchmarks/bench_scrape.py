"""Crawl throughput: images/s and CPU seconds per image, crawling a loopback site with validation on.

    python benchmarks/bench_scrape.py [--images 2000] [--workers 2] [--concurrency 8] [--tile 256]

Builds a site of ``--images`` distinct JPEG photos (non-overlapping tiles cut from the package photographs and,
when present, ../shared/data/photos), 50 per gallery page, serves it with scraper.demo_site.serve, and runs one
``python -m scraper.crawl`` subprocess against it exactly as the flow does. Prints one JSON line.
CPU time of the crawl counts the crawl process and its validation workers (RUSAGE_CHILDREN); the test server's
own CPU (this process) is reported separately.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gencomp.data.images import open_image  # noqa: E402
from scraper.crawl import build_command  # noqa: E402
from scraper.demo_site import find_extra_photos, package_photo_paths, serve  # noqa: E402

PER_PAGE = 50


def build_tile_site(root: Path, *, images: int, tile: int) -> int:
    """Write ``images`` distinct JPEG tiles and gallery pages under ``root``; returns the number written."""
    sources = package_photo_paths()
    shared = REPO.parent / "shared" / "data" / "photos"
    if shared.is_dir():
        sources += find_extra_photos([shared], limit=None, seed=0)
    (root / "img").mkdir(parents=True)
    written = 0
    for source in sources:
        img = open_image(source, draft_size=(tile * 4, tile * 4))
        for y in range(0, img.height - tile + 1, tile):
            for x in range(0, img.width - tile + 1, tile):
                if written == images:
                    break
                buf = io.BytesIO()
                img.crop((x, y, x + tile, y + tile)).save(buf, format="JPEG", quality=90)
                (root / "img" / f"{written:06d}.jpg").write_bytes(buf.getvalue())
                written += 1
        if written == images:
            break
    pages = -(-written // PER_PAGE)
    for p in range(pages):
        imgs = "".join(f'<img src="/img/{i:06d}.jpg">' for i in range(p * PER_PAGE, min(written, (p + 1) * PER_PAGE)))
        (root / f"page-{p}.html").write_text(f"<html><body>{imgs}</body></html>")
    (root / "index.html").write_text("".join(f'<a href="/page-{p}.html">{p}</a>' for p in range(pages)))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        site, out = Path(tmp) / "site", Path(tmp) / "out"
        written = build_tile_site(site, images=args.images, tile=args.tile)
        with serve(site) as base:
            cmd = build_command(
                out=out, start_urls=[base + "/index.html"], depth=1, download_delay=0, workers=args.workers,
                concurrency_per_domain=args.concurrency, timeout=30, retries=1,
            )
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            child_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - started
            child_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self_after = resource.getrusage(resource.RUSAGE_SELF)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        manifest = pd.read_parquet(out / "manifest.parquet")
        stored = int((manifest["status"] == "ok").sum())
        crawl_cpu = (child_after.ru_utime - child_before.ru_utime) + (child_after.ru_stime - child_before.ru_stime)
        server_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
        mean_bytes = float(manifest.loc[manifest["status"] == "ok", "bytes"].mean())
        print(json.dumps({
            "images_on_site": written,
            "images_stored": stored,
            "wall_s": round(wall, 2),
            "images_per_s": round(stored / wall, 1),
            "crawl_cpu_s_per_image": round(crawl_cpu / max(1, stored), 4),
            "server_cpu_s_per_image": round(server_cpu / max(1, stored), 4),
            "mean_image_bytes": round(mean_bytes),
            "workers": args.workers,
            "concurrency_per_domain": args.concurrency,
            "cpu_count": os.cpu_count(),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
