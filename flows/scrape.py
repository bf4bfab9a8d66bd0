"""Stage `scrape`: crawl start URLs (or the embedded demo site) into content-addressed files + manifest.

The crawl runs as a subprocess because Twisted's reactor cannot be restarted inside one process (a
retry, or a long-lived deployment runner, would otherwise fail on the second run). It is the only
network-bound stage, so it is the only task that retries; the crawl is incremental, so a retry only
fetches what the failed attempt did not store.
"""

from __future__ import annotations

import json

from prefect import flow, task, unmapped

from flows.common import params, run_logged, run_stage
from gencomp.config import ScrapeParams
from scraper.crawl import command_from_params


def crawl_command(p: ScrapeParams, worker_id: str | None = None) -> list[str]:
    """The crawl's argv; with scrapy-redis (``redis_url``) each of the ``processes`` gets its own worker id.
    The same builder serves ``gencomp scrape``, so both crawl a site alike."""
    return command_from_params(p, worker_id=worker_id)


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
    run_stage(scrape_flow)
