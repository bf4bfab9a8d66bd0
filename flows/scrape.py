"""Stage `scrape`: crawl start URLs (or the embedded demo site) into content-addressed files + manifest.

The crawl runs as a subprocess because Twisted's reactor cannot be restarted inside one process (a
retry, or a long-lived deployment runner, would otherwise fail on the second run). It is the only
network-bound stage, so it is the only task that retries; the crawl is incremental, so a retry only
fetches what the failed attempt did not store.
"""

from __future__ import annotations

import json

from prefect import flow, task

from flows.common import params, run_logged
from gencomp.config import ScrapeParams
from scraper.crawl import build_command


def crawl_command(p: ScrapeParams) -> list[str]:
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
        demo_site=p.uses_demo_site,
        extra_photo_dirs=p.demo_site.extra_photo_dirs if p.uses_demo_site else (),
        max_extra_photos=p.demo_site.max_extra_photos if p.uses_demo_site else None,
    )


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
