"""Stage `report`: the poster's tables, RD curves, BD-rates, sample figure and one HTML page."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import params, run_stage
from gencomp.reference import KODAK_REFERENCE_POINTS
from gencomp.report import build_report


@task(name="build-report")
def report(results: str, out: str, samples: str, dataset: str, reference: bool,
           dataset_domains: dict[str, str]) -> dict:
    return build_report(Path(results), Path(out), samples_dir=Path(samples), dataset=dataset,
                        reference_points=KODAK_REFERENCE_POINTS if reference else None,
                        dataset_domains=dataset_domains)


@flow(name="report", log_prints=True)
def report_flow() -> dict:
    p = params()
    written = report(str(Path(p.evaluate.out) / "results.parquet"), p.report.out,
                     str(Path(p.evaluate.out) / "samples"), p.report.dataset,
                     p.report.reference_points and p.report.dataset == "kodak", p.dataset_domains())
    print(f"report written: {written}")
    return written


if __name__ == "__main__":
    run_stage(report_flow)
