"""Stage `dedupe`: exact and perceptual-hash near-duplicate clusters over the scraped images."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import params
from gencomp.data.dedupe import run_dedupe


@task(name="dedupe")
def dedupe(raw_dir: str, out_dir: str, hash_kind: str, threshold: int, workers: int, sheet: int) -> dict:
    manifest = Path(raw_dir) / "manifest.parquet"
    return run_dedupe(
        Path(raw_dir),
        Path(out_dir),
        manifest=manifest if manifest.exists() else None,
        threshold=threshold,
        hash_kind=hash_kind,
        workers=workers,
        contact_sheet_clusters=sheet,
    )


@flow(name="dedupe", log_prints=True)
def dedupe_flow() -> dict:
    p = params()
    summary = dedupe(p.scrape.out, p.dedupe.out, p.dedupe.hash, p.dedupe.threshold, p.dedupe.workers,
                     p.dedupe.contact_sheet_clusters)
    print(f"dedupe summary: {summary}")
    return summary


if __name__ == "__main__":
    dedupe_flow()
