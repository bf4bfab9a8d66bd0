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

Every crawl setting's default and meaning is a field of :class:`gencomp.config.ScrapeParams`;
:func:`command_from_params` turns validated params into this command line (the flow and ``gencomp scrape`` both
use it). Network safety (:mod:`scraper.netguard`): only the allowed origins and public addresses are fetched;
``--allow-network CIDR`` / ``--allow-private`` widen the addresses, ``--resolve HOST=IP`` answers names
without DNS.
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

from gencomp.config import DemoSite, ScrapeParams
from scraper.manifest import manifest_path, merge_manifest_parts, part_path, read_manifest
from scraper.netguard import DomainRule, parse_resolve_overrides

PROGRESS_INTERVAL_S = 2.0
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The demo site is served on this address by this process (scraper.demo_site.serve): --demo-site allows it.
DEMO_SITE_NETWORK = "127.0.0.1/32"


def default(name: str):
    """The default of a ScrapeParams field: the one definition every entry point uses."""
    return ScrapeParams.model_fields[name].default


def describe(name: str) -> str:
    """The description of a ScrapeParams field (help texts of every entry point)."""
    return ScrapeParams.model_fields[name].description or ""


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
    allow_private: bool = False,
    allowed_networks: Iterable[str] = (),
    resolve: Iterable[str] = (),
    demo_site: bool = False,
    extra_photo_dirs: Iterable[str | Path] = (),
    max_extra_photos: int | str | None = None,
    demo_port: int | None = None,
    log_level: str | None = None,
    redis_url: str | None = None,
    redis_key: str | None = None,
    worker_id: str | None = None,
    idle_timeout: float | None = None,
    merge_only: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs one crawl with these options (None / empty means the crawler's default, which is
    gencomp.config.ScrapeParams' default). ``max_extra_photos="all"`` publishes every extra photo.

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
    for network in allowed_networks:
        argv += ["--allow-network", str(network)]
    for entry in resolve:
        argv += ["--resolve", str(entry)]
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
    if allow_private:
        argv.append("--allow-private")
    if demo_site:
        argv.append("--demo-site")
    if merge_only:
        argv.append("--merge-only")
    return argv


def command_from_params(
    p: ScrapeParams,
    *,
    worker_id: str | None = None,
    log_level: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The crawl's argv for a validated :class:`ScrapeParams`: what ``dvc repro`` (flows.scrape) and
    ``gencomp scrape`` both run. Every value is passed explicitly, so no entry point's own default can differ."""
    demo = p.uses_demo_site
    return build_command(
        out=p.out,
        start_urls=p.start_urls,
        allowed_domains=p.allowed_domains,
        depth=p.depth,
        max_images=p.max_images,
        min_width=p.min_width,
        min_height=p.min_height,
        formats=p.formats,
        concurrency_per_domain=p.concurrency_per_domain,
        download_delay=p.download_delay,
        user_agent=p.user_agent,
        timeout=p.timeout_s,
        max_bytes=p.max_bytes,
        max_pixels=p.max_pixels,
        workers=p.workers,
        retries=p.retries,
        allow_private=p.allow_private_addresses,
        allowed_networks=p.allowed_networks,
        demo_site=demo,
        extra_photo_dirs=p.demo_site.extra_photo_dirs if demo else (),
        max_extra_photos=(
            ("all" if p.demo_site.max_extra_photos is None else p.demo_site.max_extra_photos) if demo else None
        ),
        redis_url=p.redis_url,
        worker_id=worker_id,
        log_level=log_level,
        python=python,
    )


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


def _max_extra_photos(text: str) -> int | None:
    return None if text.strip().lower() == "all" else _non_negative_int(text)


def _worker_id(text: str) -> str:
    if not WORKER_ID_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} must match {WORKER_ID_RE.pattern} (it names a file)")
    return text


def _field_check(name: str, convert=str):
    """An argparse type that validates one value with the ScrapeParams field ``name`` (same rules, same message)."""
    from pydantic import ValidationError

    def check(text: str):
        value = convert(text)
        # Only this field is checked here: a stand-in start URL keeps the rules that tie it to other fields
        # (redis_url needs start URLs) from firing; main() checks the combination.
        others = {} if name == "start_urls" else {"start_urls": ["http://example.invalid/"]}
        try:
            checked = ScrapeParams.model_validate({**others, name: [value] if _is_list(name) else value})
        except ValidationError as exc:
            raise argparse.ArgumentTypeError("; ".join(e["msg"] for e in exc.errors())) from None
        result = getattr(checked, name)
        return result[0] if _is_list(name) else result

    check.__name__ = name  # argparse names the type in its error message
    return check


def _is_list(name: str) -> bool:
    return isinstance(default(name), list)


def _allowed_domain(text: str) -> str:
    try:
        DomainRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _resolve_entry(text: str) -> str:
    try:
        parse_resolve_overrides([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def make_parser() -> argparse.ArgumentParser:
    """The command line; every crawl setting's default and help text come from gencomp.config.ScrapeParams."""
    p = argparse.ArgumentParser(prog="python -m scraper.crawl", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help=describe("out"))
    p.add_argument("--start-url", action="append", default=[], dest="start_urls", metavar="URL",
                   type=_field_check("start_urls"), help=describe("start_urls"))
    p.add_argument("--allowed-domain", action="append", default=[], dest="allowed_domains",
                   metavar="[SCHEME://]HOST[:PORT]", type=_allowed_domain, help=describe("allowed_domains"))
    p.add_argument("--depth", type=_field_check("depth", int), default=default("depth"), help=describe("depth"))
    p.add_argument("--max-images", type=_field_check("max_images", int), default=default("max_images"),
                   help=describe("max_images"))
    p.add_argument("--min-width", type=_field_check("min_width", int), default=default("min_width"),
                   help=describe("min_width"))
    p.add_argument("--min-height", type=_field_check("min_height", int), default=default("min_height"),
                   help=describe("min_height"))
    p.add_argument("--format", action="append", default=[], dest="formats", type=_field_check("formats"),
                   help=f"{describe('formats')} Repeatable; default: {' '.join(default('formats'))}")
    p.add_argument("--concurrency-per-domain", type=_field_check("concurrency_per_domain", int),
                   default=default("concurrency_per_domain"), help=describe("concurrency_per_domain"))
    p.add_argument("--download-delay", type=_field_check("download_delay", float), default=default("download_delay"),
                   help=describe("download_delay"))
    p.add_argument("--user-agent", type=_field_check("user_agent"), default=default("user_agent"),
                   help=describe("user_agent"))
    p.add_argument("--timeout", type=_field_check("timeout_s", float), default=default("timeout_s"),
                   help=describe("timeout_s"))
    p.add_argument("--max-bytes", type=_field_check("max_bytes", int), default=default("max_bytes"),
                   help=describe("max_bytes"))
    p.add_argument("--max-pixels", type=_field_check("max_pixels", int), default=default("max_pixels"),
                   help=describe("max_pixels"))
    p.add_argument("--workers", type=_field_check("workers", int), default=default("workers"),
                   help=describe("workers"))
    p.add_argument("--retries", type=_field_check("retries", int), default=default("retries"),
                   help=describe("retries"))
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    safety = p.add_argument_group("network safety (scraper.netguard)")
    safety.add_argument("--allow-private", action="store_true", default=default("allow_private_addresses"),
                        help=describe("allow_private_addresses"))
    safety.add_argument("--allow-network", action="append", default=[], dest="allowed_networks", metavar="CIDR",
                        type=_field_check("allowed_networks"), help=describe("allowed_networks"))
    safety.add_argument("--resolve", action="append", default=[], metavar="HOST=IP", type=_resolve_entry,
                        help="answer HOST (or *.DOMAIN) with IP instead of asking DNS, like curl --resolve; the "
                             "address is checked like any other")
    demo = p.add_argument_group("demo site")
    demo.add_argument("--demo-site", action="store_true",
                      help=f"build and serve the offline demo site and crawl it (allows its address, "
                           f"{DEMO_SITE_NETWORK}, and nothing else private)")
    demo.add_argument("--extra-photo-dir", action="append", default=[], dest="extra_photo_dirs", type=Path,
                      help=DemoSite.model_fields["extra_photo_dirs"].description)
    demo.add_argument("--max-extra-photos", type=_max_extra_photos,
                      default=DemoSite.model_fields["max_extra_photos"].default, metavar="N|all",
                      help=DemoSite.model_fields["max_extra_photos"].description)
    demo.add_argument("--demo-port", type=_non_negative_int, default=0,
                      help="port to serve on (0: any free port; fix it so rescrapes see the same URLs)")
    scale = p.add_argument_group("scale-out (several processes, one crawl)")
    scale.add_argument("--redis-url", type=_field_check("redis_url"), default=default("redis_url"),
                       help=describe("redis_url") + " Run N processes with the same arguments; each writes its "
                            "own manifest part, the last one merges them.")
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
    """The Scrapy settings of one crawl: scraper/settings.py, then this run's values on top."""
    from scrapy.settings import Settings

    from scraper.settings import concurrency_settings, timing_settings

    settings = Settings()
    settings.setmodule("scraper.settings", priority="project")
    overrides = {
        "GENCOMP_OUT_DIR": str(args.out),
        "GENCOMP_CRAWL_ID": crawl_id,
        "GENCOMP_FORMATS": list(args.formats) or list(default("formats")),
        "GENCOMP_MAX_PIXELS": args.max_pixels,
        "GENCOMP_MIN_WIDTH": args.min_width,
        "GENCOMP_MIN_HEIGHT": args.min_height,
        "GENCOMP_WORKERS": args.workers,
        "GENCOMP_MAX_IMAGES": args.max_images,
        **concurrency_settings(args.concurrency_per_domain),
        **timing_settings(args.download_delay, args.timeout, args.retries),
        "DOWNLOAD_MAXSIZE": args.max_bytes,
        "USER_AGENT": args.user_agent,
        "GENCOMP_ALLOW_PRIVATE": bool(args.allow_private),
        "GENCOMP_ALLOWED_NETWORKS": list(args.allowed_networks),
        "GENCOMP_RESOLVE": parse_resolve_overrides(args.resolve),
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
                # JSON, not scrapy-redis' default pickle (scraper.redis_serializer says why).
                "SCHEDULER_SERIALIZER": "scraper.redis_serializer",
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
    page_statuses: Counter[str] = Counter()
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
            else:
                page_statuses[item.status] += 1
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
        hint = ""
        if page_statuses["blocked_private_address"]:
            hint = ("; a start URL's host is or resolves to a non-public address, refused unless allowed "
                    "(--allow-network CIDR, or --allow-private)")
        elif page_statuses["offsite_redirect"]:
            hint = ("; a start URL redirected outside the allowed origins (e.g. to www. or another port): "
                    "list the target's host with --allowed-domain if it belongs to the site")
        problems.append(f"no start URL could be fetched (see pages_failed and the manifest's page rows){hint}")
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

        # The demo site is served on loopback by this very process: allow that address, and only that one.
        if DEMO_SITE_NETWORK not in args.allowed_networks:
            args.allowed_networks.append(DEMO_SITE_NETWORK)
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
