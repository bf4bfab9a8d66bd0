"""Command-line entry point: ``python -m scraper.crawl --out DIR --start-url URL ...``.

One crawl per process (the Twisted reactor cannot restart), so Prefect flows and the ``gencomp scrape`` CLI run
it as a subprocess; :func:`build_command` produces the argv. Output: ``<out>/images/..`` and
``<out>/manifest.parquet`` (see :mod:`scraper.manifest`). Prints ``progress: ...`` lines to stdout and, last, one
JSON summary line; exits 0 when the crawl ran, 1 when it failed (no start page could be fetched, a pipeline
error lost rows, or the spider could not start), 2 on bad arguments.

Scale-out: N processes started with the same arguments plus ``--redis-url redis://HOST:PORT/DB`` (and a distinct
``--worker-id`` each) crawl as one: scrapy-redis' scheduler shares the request queue, and
:mod:`scraper.shared_state` shares which pages, image URLs and contents are taken (protocol there). Each process
writes ``<out>/manifest-parts/part-<crawl_id>.parquet``; the last one to finish merges the parts into
``<out>/manifest.parquet``. ``--merge-only`` merges by hand (after a process was killed), and
``--redis-reset`` deletes a crashed run's Redis keys.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from gencomp.data.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS
from scraper.manifest import manifest_path, merge_manifest_parts, part_path, read_manifest

PROGRESS_INTERVAL_S = 2.0
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


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
    redis_url: str | None = None,
    redis_key: str | None = None,
    worker_id: str | None = None,
    idle_timeout: float | None = None,
    merge_only: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs one crawl with these options (None / empty means the crawler's default).

    ``redis_url`` makes the process one worker of a distributed crawl (run the same argv N times, with distinct
    ``worker_id``); ``merge_only`` gives the argv that only merges ``out``'s manifest parts.
    """
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
        "--redis-url": redis_url,
        "--redis-key": redis_key,
        "--worker-id": worker_id,
        "--idle-timeout": idle_timeout,
    }
    for flag, value in scalars.items():
        if value is not None:
            argv += [flag, str(value)]
    if demo_site:
        argv.append("--demo-site")
    if merge_only:
        argv.append("--merge-only")
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


def _worker_id(text: str) -> str:
    if not WORKER_ID_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} must match {WORKER_ID_RE.pattern} (it names a file)")
    return text


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a redis:// , rediss:// or unix:// URL")
    return text


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
    scale = p.add_argument_group("scale-out (several processes, one crawl)")
    scale.add_argument("--redis-url", type=_redis_url, default=None,
                       help="share the request queue and seen-sets in this Redis: run N processes with the same "
                            "arguments; each writes its own manifest part, the last one merges them")
    scale.add_argument("--redis-key", default=None,
                       help="prefix of the run's Redis keys (default: derived from the resolved --out)")
    scale.add_argument("--worker-id", type=_worker_id, default=None,
                       help="names this process's manifest part and crawl_id (default: host-pid)")
    scale.add_argument("--idle-timeout", type=_non_negative_float, default=10.0,
                       help="with --redis-url: close after the shared queue stayed empty this many seconds")
    scale.add_argument("--merge-only", action="store_true",
                       help="merge <out>/manifest-parts/ into <out>/manifest.parquet and exit (no crawl)")
    scale.add_argument("--redis-reset", action="store_true",
                       help="with --redis-url: delete the run's Redis keys (after a crashed run) and exit")
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
    if args.redis_url:
        overrides.update(
            {
                "GENCOMP_REDIS_URL": args.redis_url,
                "GENCOMP_REDIS_KEY": args.redis_key,
                "GENCOMP_REDIS_IDLE_TIMEOUT": args.idle_timeout,
                "REDIS_URL": args.redis_url,
                "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
                "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
                "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",  # image requests before pages
                "SCHEDULER_QUEUE_KEY": f"{args.redis_key}:requests",
                "SCHEDULER_DUPEFILTER_KEY": f"{args.redis_key}:dupefilter",
                # One process closing must not clear the queue the others still use; the last one to leave
                # deletes the run's keys (scraper.shared_state.RedisCrawlState.finish).
                "SCHEDULER_PERSIST": True,
                "SCHEDULER_FLUSH_ON_START": False,
                # 0: pop without blocking. A blocking pop would stall this process's reactor (downloads, items).
                "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
            }
        )
        settings.set("EXTENSIONS", {
            **settings.getdict("EXTENSIONS"), "scraper.extensions.CloseWhenSharedQueueIdle": 500,
        }, priority="cmdline")
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
    if args.redis_url:
        crawl_id = f"{crawl_id}-{args.worker_id}"  # unique per process: names its manifest part
        # scrapy-redis 0.9 still passes spider= to the stats collector on every request (deprecated in Scrapy,
        # harmless): one warning line per request would bury the crawl's own log.
        from scrapy.exceptions import ScrapyDeprecationWarning

        warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning, module=r"scrapy_redis\.")
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
    manifest = part_path(args.out, crawl_id) if args.redis_url else manifest_path(args.out)
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
    nothing_fetched = summary["pages_crawled"] == 0 and kinds["image"] == 0
    if args.redis_url:
        # A worker that found the queue empty (the others had the work) did its part; one whose every page failed
        # did not.
        if not startup_failures and nothing_fetched and kinds["page"] > 0:
            problems.append("every page this process requested failed (see the manifest part's page rows)")
    elif not startup_failures and nothing_fetched:
        problems.append("no start URL could be fetched (see pages_failed and the manifest's page rows)")
    if not startup_failures and not manifest.exists():
        problems.append(f"the manifest {manifest} was not written")
    if problems:
        summary["status"] = "failed"
        summary["error"] = " | ".join(problems)
    return summary


def merge_only(out: Path) -> dict:
    path, parts = merge_manifest_parts(out)
    return {"status": "ok", "out": str(out), "manifest": str(path), "parts_merged": parts,
            "rows": read_manifest(out, include_parts=False).num_rows}


def run_distributed(args: argparse.Namespace, start_urls: Sequence[str]) -> dict:
    """Join the run in Redis, crawl, leave; the last process to leave merges the manifest parts."""
    from scraper.shared_state import RedisCrawlState

    state = RedisCrawlState(redis_url=args.redis_url, key_prefix=args.redis_key)
    workers = state.register()
    print(f"redis: joined run {args.redis_key} as worker {args.worker_id} ({workers} running)", flush=True)
    summary: dict = {}
    try:
        summary = run_crawl(args, start_urls)
    finally:
        left = state.finish()
        state.close()
        summary.update(worker_id=args.worker_id, redis_key=args.redis_key, workers_left=left, merged=False)
        if left == 0:
            path, parts = merge_manifest_parts(args.out)
            summary.update(merged=True, merged_manifest=str(path), parts_merged=parts)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.merge_only or args.redis_reset:
        if args.merge_only and args.redis_reset:
            parser.error("--merge-only and --redis-reset are separate steps")
        if args.redis_reset and not args.redis_url:
            parser.error("--redis-reset needs --redis-url")
    elif not args.start_urls and not args.demo_site:
        parser.error("give at least one --start-url, or --demo-site")
    if args.extra_photo_dirs and not args.demo_site:
        parser.error("--extra-photo-dir only applies with --demo-site")
    if args.redis_url and args.demo_site:
        parser.error("--demo-site serves a site per process; run one demo site and give its URL as --start-url")
    for directory in args.extra_photo_dirs:
        if not directory.is_dir():
            parser.error(f"--extra-photo-dir {directory} is not a folder")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create --out {args.out}: {exc}")
    args.out = args.out.resolve()

    if args.merge_only:
        try:
            summary = merge_only(args.out)
        except (OSError, ValueError) as exc:
            summary = {"status": "failed", "out": str(args.out), "error": f"merge failed: {exc}"}
        return _report(summary)
    if args.redis_url:
        from scraper.shared_state import RedisCrawlState, default_redis_key, validate_redis_key

        try:
            args.redis_key = validate_redis_key(args.redis_key or default_redis_key(args.out))
        except ValueError as exc:
            parser.error(str(exc))
        args.worker_id = args.worker_id or default_worker_id()
        state = RedisCrawlState(redis_url=args.redis_url, key_prefix=args.redis_key)
        try:
            state.ping()
            if args.redis_reset:
                deleted = state.reset()
                return _report({"status": "ok", "redis_key": args.redis_key, "keys_deleted": deleted})
        except Exception as exc:  # redis.exceptions.* : unreachable server, auth, wrong URL
            return _report({"status": "failed", "error": f"redis at {args.redis_url}: {type(exc).__name__}: {exc}"})
        finally:
            state.close()

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
    elif args.redis_url:
        summary = run_distributed(args, args.start_urls)
    else:
        summary = run_crawl(args, args.start_urls)
    return _report(summary)


def _report(summary: dict) -> int:
    print(json.dumps(summary, sort_keys=True), flush=True)
    if summary["status"] != "ok":
        print(f"error: {summary['error']}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
