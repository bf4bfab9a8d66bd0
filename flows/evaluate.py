"""Stage `evaluate`: the grid of codecs x settings x images, one Prefect task per (cell, image).

Parallelism comes from the task runner named in params (threads here, a Dask cluster for scale-out); results
are cached per unit by gencomp.evaluate, so a rerun after adding a setting computes only the new units.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import params, run_logged, run_stage
from gencomp.config import EvalDataset, EvaluateParams
from gencomp.data.eval_sets import folder_images, shard_images
from gencomp.evaluate import expand_grid, run_grid, write_results


class EvaluationFailed(RuntimeError):
    """Some (cell, image) units failed and the grid does not allow failures: the stage fails."""


@task(name="eval-unit", cache_policy=NO_CACHE)
def eval_unit(fn, item):
    return fn(item)


def prefect_map(fn, items):
    """map_fn for gencomp.evaluate.run_grid: each unit becomes a task on the flow's task runner."""
    futures = eval_unit.map(unmapped(fn), items)
    return [f.result() for f in futures]


def load_dataset(d: EvalDataset):
    if d.shards is not None:
        return shard_images(d.shards, d.split, max_images=d.max_images, max_side=d.max_side)
    return folder_images(d.dir, max_images=d.max_images, max_side=d.max_side)


def task_runner(p: EvaluateParams):
    if p.runner == "dask":
        from prefect_dask import DaskTaskRunner  # optional extra: pip install 'gencomp[dask]'

        return DaskTaskRunner(address=p.dask_address)
    return ThreadPoolTaskRunner(max_workers=p.workers)


def _evaluate(p: EvaluateParams) -> dict:
    out = Path(p.out)
    datasets = {d.name: load_dataset(d) for d in p.datasets}
    for name, images in datasets.items():
        print(f"dataset {name}: {len(images)} images")
        if not images:
            raise ValueError(f"evaluation dataset {name!r} has no images")
    cells = expand_grid(p.grid_spec())
    frame = run_grid(cells, datasets, cache_dir=out / "cache", map_fn=prefect_map,
                     samples_dir=out / "samples", sample_images=p.sample_images)
    write_results(frame, out / "results.parquet")
    print(f"units: {frame.attrs}")
    errors = frame[frame["error"].fillna("") != ""] if "error" in frame else frame.iloc[:0]
    for _, row in errors.iterrows():
        print(f"FAILED {row['label']} on {row['image']}: {row['error']}")
    if len(errors) and not p.allow_failures:
        raise EvaluationFailed(f"{len(errors)} of {len(frame)} evaluation units failed (recorded in the error column "
                               f"of {out / 'results.parquet'}); fix them, or set evaluate.allow_failures: true")
    return {"rows": len(frame), "errors": len(errors)}


@flow(name="evaluate", log_prints=True)
def evaluate_flow(via_dvc: bool = False) -> dict:
    """The evaluate stage. ``via_dvc`` (deployments) asks DVC to run the stage, keeping its lineage."""
    if via_dvc:
        return {"dvc": run_logged(["dvc", "repro", "--single-item", "evaluate"])}
    p = params().evaluate
    # the grid runs as a subflow so that its task runner (threads or Dask) can come from params.yaml
    return flow(name="evaluate-grid", task_runner=task_runner(p), log_prints=True)(_evaluate)(p)


if __name__ == "__main__":
    run_stage(evaluate_flow)
