"""Stage `scrape`: crawl start URLs (or the embedded demo site) into content-addressed files + manifest.

The crawl runs as a subprocess because Twisted's reactor cannot be restarted inside one process (a
retry, or a long-lived deployment runner, would otherwise fail on the second run). It is the only
network-bound stage, so it is the only task that retries; the crawl is incremental, so a retry only
fetches what the failed attempt did not store.
"""

from __future__ import annotations

import json

from prefect import flow, task

from flows.common import params, python_module, run_logged
from gencomp.config import ScrapeParams


def crawl_command(p: ScrapeParams) -> list[str]:
    args = [
        "--out", p.out,
        "--depth", str(p.depth),
        "--max-images", str(p.max_images),
        "--min-width", str(p.min_width),
        "--min-height", str(p.min_height),
        "--concurrency-per-domain", str(p.concurrency_per_domain),
        "--download-delay", str(p.download_delay),
        "--user-agent", p.user_agent,
        "--timeout", str(p.timeout_s),
        "--max-bytes", str(p.max_bytes),
        "--max-pixels", str(p.max_pixels),
        "--workers", str(p.workers),
    ]
    for fmt in p.formats:
        args += ["--format", fmt]
    for domain in p.allowed_domains:
        args += ["--allowed-domain", domain]
    if p.uses_demo_site:
        args.append("--demo-site")
        for folder in p.demo_site.extra_photo_dirs:
            args += ["--extra-photo-dir", folder]
        if p.demo_site.max_extra_photos is not None:
            args += ["--max-extra-photos", str(p.demo_site.max_extra_photos)]
    else:
        for url in p.start_urls:
            args += ["--start-url", url]
    return python_module("scraper.crawl", *args)


@task(name="crawl", retries=2, retry_delay_seconds=30)
def crawl(p: ScrapeParams) -> dict:
    last = run_logged(crawl_command(p))
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        return {"summary": last}


@flow(name="scrape", log_prints=True)
def scrape_flow() -> dict:
    summary = crawl(params().scrape)
    print(f"scrape summary: {summary}")
    return summary


if __name__ == "__main__":
    scrape_flow()
