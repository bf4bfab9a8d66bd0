"""Stage `dedupe`: exact and near-duplicate clusters (hash candidates, verified on thumbnails) over the scraped images."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import params, run_stage
from gencomp.config import DedupeParams
from gencomp.data.dedupe import run_dedupe


@task(name="dedupe")
def dedupe(raw_dir: str, settings: DedupeParams) -> dict:
    manifest = Path(raw_dir) / "manifest.parquet"
    return run_dedupe(
        Path(raw_dir),
        Path(settings.out),
        manifest=manifest if manifest.exists() else None,
        method=settings.method,
        threshold=settings.threshold,
        hash_kind=settings.hash,
        verify_threshold=settings.verify_threshold,
        guard_threshold=settings.guard_threshold,
        workers=settings.workers,
        contact_sheet_clusters=settings.contact_sheet_clusters,
        contact_sheet_pairs=settings.contact_sheet_pairs,
    )


@flow(name="dedupe", log_prints=True)
def dedupe_flow() -> dict:
    p = params()
    summary = dedupe(p.scrape.out, p.dedupe)
    print(f"dedupe summary: {summary}")
    return summary


if __name__ == "__main__":
    run_stage(dedupe_flow)
