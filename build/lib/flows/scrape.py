"""Stage `scrape`: crawl start URLs (or the embedded demo site) into content-addressed files + manifest.

The crawl runs as a subprocess because Twisted's reactor cannot be restarted inside one process (a
retry, or a long-lived deployment runner, would otherwise fail on the second run). It is the only
network-bound stage, so it is the only task that retries; the crawl is incremental, so a retry only
fetches what the failed attempt did not store.
"""

from __future__ import annotations

import json

from prefect import flow, task, unmapped

from flows.common import params, run_logged
from gencomp.config import ScrapeParams
from scraper.crawl import build_command


def crawl_command(p: ScrapeParams, worker_id: str | None = None) -> list[str]:
    """The crawl's argv; with scrapy-redis (``redis_url``) each of the ``processes`` gets its own worker id."""
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
        redis_url=p.redis_url,
        worker_id=worker_id,
    )


@task(name="crawl", retries=2, retry_delay_seconds=30)
def crawl(p: ScrapeParams, worker_id: str | None = None) -> dict:
    last = run_logged(crawl_command(p, worker_id))
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        return {"summary": last}


@flow(name="scrape", log_prints=True)
def scrape_flow() -> dict | list[dict]:
    p = params().scrape
    if p.processes == 1:
        summary = crawl(p)
    else:
        # N spider processes share one scrapy-redis queue; the last to finish merges the manifest parts
        futures = crawl.map(unmapped(p), [f"w{k}" for k in range(p.processes)])
        summary = [f.result() for f in futures]
    print(f"scrape summary: {summary}")
    return summary


if __name__ == "__main__":
    scrape_flow()
