"""Command-line entry point: ``python -m scraper.crawl --out DIR --start-url URL ...``.

One crawl per process (the Twisted reactor cannot restart), so Prefect flows and the ``gencomp scrape`` CLI run
it as a subprocess; :func:`build_command` produces the argv. Output: ``<out>/images/..`` and
``<out>/manifest.parquet`` (see :mod:`scraper.manifest`). Prints ``progress: ...`` lines to stdout and, last, one
JSON summary line; exits 0 when the crawl ran, 1 when it failed (no start page could be fetched, a pipeline
error lost rows, or the spider could not start), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from gencomp.data.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS

PROGRESS_INTERVAL_S = 2.0


def build_command(
    *,
    out: str | Path,
    start_urls: Iterable[str] = (),
    allowed_domains: Iterable[str] = (),
    depth: int | None = None,
    max_images: int | None = None,
    min_width: int | None = None,
    min_height: int | None = None,
    formats: Iterable[str] = (),
    concurrency_per_domain: int | None = None,
    download_delay: float | None = None,
    user_agent: str | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    workers: int | None = None,
    retries: int | None = None,
    demo_site: bool = False,
    extra_photo_dirs: Iterable[str | Path] = (),
    max_extra_photos: int | None = None,
    demo_port: int | None = None,
    log_level: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs one crawl with these options (None / empty means the crawler's default)."""
    argv = [python, "-m", "scraper.crawl", "--out", str(out)]
    for url in start_urls:
        argv += ["--start-url", str(url)]
    for domain in allowed_domains:
        argv += ["--allowed-domain", str(domain)]
    for fmt in formats:
        argv += ["--format", str(fmt)]
    for directory in extra_photo_dirs:
        argv += ["--extra-photo-dir", str(directory)]
    scalars = {
        "--depth": depth,
        "--max-images": max_images,
        "--min-width": min_width,
        "--min-height": min_height,
        "--concurrency-per-domain": concurrency_per_domain,
        "--download-delay": download_delay,
        "--user-agent": user_agent,
        "--timeout": timeout,
        "--max-bytes": max_bytes,
        "--max-pixels": max_pixels,
        "--workers": workers,
        "--retries": retries,
        "--max-extra-photos": max_extra_photos,
        "--demo-port": demo_port,
        "--log-level": log_level,
    }
    for flag, value in scalars.items():
        if value is not None:
            argv += [flag, str(value)]
    if demo_site:
        argv.append("--demo-site")
    return argv


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _image_format(text: str) -> str:
    value = text.strip().upper()
    if value == "JPG":
        value = "JPEG"
    if value not in DEFAULT_FORMATS:
        raise argparse.ArgumentTypeError(f"unknown format {text!r}; choose from {sorted(DEFAULT_FORMATS)}")
    return value


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scraper.crawl", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (images/ and manifest.parquet)")
    p.add_argument("--start-url", action="append", default=[], dest="start_urls", metavar="URL")
    p.add_argument("--allowed-domain", action="append", default=[], dest="allowed_domains", metavar="D",
                   help="default: the hosts of the start URLs")
    p.add_argument("--depth", type=_non_negative_int, default=2, help="page levels to follow (0: start pages)")
    p.add_argument("--max-images", type=_non_negative_int, default=0, help="stop after storing N (0: no limit)")
    p.add_argument("--min-width", type=_positive_int, default=1)
    p.add_argument("--min-height", type=_positive_int, default=1)
    p.add_argument("--format", action="append", default=[], dest="formats", type=_image_format,
                   help="allowed image format (repeatable); default: all of gencomp.data.images.DEFAULT_FORMATS")
    p.add_argument("--concurrency-per-domain", type=_positive_int, default=4)
    p.add_argument("--download-delay", type=_non_negative_float, default=0.25, help="seconds (AutoThrottle floor)")
    p.add_argument("--user-agent", default=None)
    p.add_argument("--timeout", type=_non_negative_float, default=30.0, help="per-download timeout, seconds")
    p.add_argument("--max-bytes", type=_positive_int, default=50 * 1024 * 1024, help="per-download byte cap")
    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS)
    p.add_argument("--workers", type=_positive_int, default=2, help="validation worker processes")
    p.add_argument("--retries", type=_non_negative_int, default=3, help="retries on 429/5xx/timeouts")
    p.add_argument("--demo-site", action="store_true", help="build and serve the offline demo site and crawl it")
    p.add_argument("--extra-photo-dir", action="append", default=[], dest="extra_photo_dirs", type=Path,
                   help="with --demo-site: also publish the photos under this folder")
    p.add_argument("--max-extra-photos", type=_non_negative_int, default=None)
    p.add_argument("--demo-port", type=_non_negative_int, default=0,
                   help="with --demo-site: port to serve on (0: any free port; fix it so rescrapes see the same URLs)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def crawl_settings(args: argparse.Namespace, crawl_id: str):
    from scrapy.settings import Settings

    settings = Settings()
    settings.setmodule("scraper.settings", priority="project")
    overrides = {
        "GENCOMP_OUT_DIR": str(args.out),
        "GENCOMP_CRAWL_ID": crawl_id,
        "GENCOMP_FORMATS": list(args.formats) or sorted(DEFAULT_FORMATS),
        "GENCOMP_MAX_PIXELS": args.max_pixels,
        "GENCOMP_MIN_WIDTH": args.min_width,
        "GENCOMP_MIN_HEIGHT": args.min_height,
        "GENCOMP_WORKERS": args.workers,
        "GENCOMP_MAX_IMAGES": args.max_images,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency_per_domain,
        "CONCURRENT_REQUESTS": max(16, args.concurrency_per_domain * 4),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(args.concurrency_per_domain),
        "DOWNLOAD_DELAY": args.download_delay,
        "AUTOTHROTTLE_START_DELAY": args.download_delay,
        "DOWNLOAD_TIMEOUT": args.timeout,
        "DOWNLOAD_MAXSIZE": args.max_bytes,
        "RETRY_TIMES": args.retries,
        "RETRY_ENABLED": args.retries > 0,
        "LOG_LEVEL": args.log_level,
    }
    if args.timeout > 0:
        # Backoff must stay proportionate to the timeout: short test/demo timeouts mean short waits.
        overrides["GENCOMP_RETRY_BACKOFF_BASE"] = min(1.0, args.timeout / 4)
    if args.user_agent:
        overrides["USER_AGENT"] = args.user_agent
    settings.setdict(overrides, priority="cmdline")
    return settings


def run_crawl(args: argparse.Namespace, start_urls: Sequence[str]) -> dict:
    """Run one crawl in this process (starts and stops the reactor) and return the summary dict."""
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess

    from scraper.items import ManifestRow
    from scraper.spiders.images import ImagesSpider

    crawl_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    settings = crawl_settings(args, crawl_id)
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(ImagesSpider)
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    errors: list[str] = []
    finish: dict = {}
    started = time.monotonic()
    last_progress = [0.0]

    def print_progress(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last_progress[0] >= PROGRESS_INTERVAL_S:
            last_progress[0] = now
            tried = kinds["image"]
            print(f"progress: stored={statuses['ok']} tried={tried} pages_failed={kinds['page']} "
                  f"elapsed={now - started:.1f}s", flush=True)

    def on_item(item, response=None, spider=None):
        if isinstance(item, ManifestRow):
            kinds[item.kind] += 1
            if item.kind == "image":
                statuses[item.status] += 1
        print_progress()

    def on_item_error(item, response=None, spider=None, failure=None):
        errors.append(f"{type(item).__name__} {getattr(item, 'url', '?')}: {failure.getErrorMessage()}")

    def on_closed(spider, reason):
        finish["reason"] = reason

    crawler.signals.connect(on_item, signal=signals.item_scraped)
    crawler.signals.connect(on_item_error, signal=signals.item_error)
    crawler.signals.connect(on_closed, signal=signals.spider_closed)
    deferred = process.crawl(
        crawler, start_urls=list(start_urls), allowed_domains=list(args.allowed_domains), max_depth=args.depth
    )
    startup_failures: list[str] = []
    deferred.addErrback(lambda failure: startup_failures.append(failure.getErrorMessage()))
    process.start()
    print_progress(force=True)
    spider = crawler.spider
    manifest = Path(args.out) / "manifest.parquet"
    summary = {
        "status": "ok",
        "out": str(args.out),
        "manifest": str(manifest),
        "crawl_id": crawl_id,
        "start_urls": list(start_urls),
        "images_tried": kinds["image"],
        "images_stored": statuses["ok"],
        "statuses": dict(sorted(statuses.items())),
        "pages_crawled": getattr(spider, "pages_crawled", 0),
        "pages_failed": kinds["page"],
        "finish_reason": finish.get("reason", ""),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    problems = []
    if startup_failures:
        problems.append("crawl failed to start: " + "; ".join(startup_failures))
    if errors:
        problems.append(f"{len(errors)} rows lost to pipeline errors, first: {errors[0]}")
    if not startup_failures and summary["pages_crawled"] == 0 and kinds["image"] == 0:
        problems.append("no start URL could be fetched (see pages_failed and the manifest's page rows)")
    if not startup_failures and not manifest.exists():
        problems.append(f"the manifest {manifest} was not written")
    if problems:
        summary["status"] = "failed"
        summary["error"] = " | ".join(problems)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.start_urls and not args.demo_site:
        parser.error("give at least one --start-url, or --demo-site")
    if args.extra_photo_dirs and not args.demo_site:
        parser.error("--extra-photo-dir only applies with --demo-site")
    for directory in args.extra_photo_dirs:
        if not directory.is_dir():
            parser.error(f"--extra-photo-dir {directory} is not a folder")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create --out {args.out}: {exc}")
    args.out = args.out.resolve()

    if args.demo_site:
        from scraper.demo_site import build_site, serve

        with tempfile.TemporaryDirectory(prefix="gencomp-demo-site-") as site_dir:
            info = build_site(
                site_dir, extra_photo_dirs=args.extra_photo_dirs, max_extra_photos=args.max_extra_photos
            )
            print(f"demo site: {len(info.pages)} pages, {len(info.expected_ok)} good images, "
                  f"{len(info.broken)} broken files", flush=True)
            with serve(site_dir, port=args.demo_port) as base_url:
                summary = run_crawl(args, [*args.start_urls, base_url + "/index.html"])
    else:
        summary = run_crawl(args, args.start_urls)
    print(json.dumps(summary, sort_keys=True), flush=True)
    if summary["status"] != "ok":
        print(f"error: {summary['error']}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
