"""Flows that drive DVC itself, for deployments: `pipeline` (the full `dvc repro`) and `rescrape`.

A deployment run must keep DVC's lineage, so these flows never do a stage's work themselves: they ask DVC to
run the stages, and DVC runs each stage's own flow (`python -m flows.<stage>`). DVC holds a repository lock,
so two runs cannot corrupt the workspace; the deployment runner additionally runs one flow at a time.
"""

from __future__ import annotations

from prefect import flow, task

from flows.common import run_logged


@task(name="dvc")
def dvc(*args: str) -> str:
    return run_logged(["dvc", *args])


@flow(name="pipeline", log_prints=True)
def pipeline_flow(force: bool = False) -> str:
    """`dvc repro`: rerun every stage whose code, params or inputs changed."""
    return dvc("repro", *(["--force"] if force else []))


@flow(name="rescrape", log_prints=True)
def rescrape_flow(downstream: bool = True) -> str:
    """Rescrape (the scrape stage is persistent and incremental: only new or changed URLs are fetched), then
    rerun the stages downstream of any change."""
    # The scrape stage's deps rarely change between scheduled runs, so DVC would skip it: force that one stage.
    out = dvc("repro", "--force", "--single-item", "scrape")
    if downstream:
        out = dvc("repro")
    return out


if __name__ == "__main__":
    pipeline_flow()
