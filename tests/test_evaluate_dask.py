"""The evaluate flow on a Dask cluster (`evaluate.runner: dask`): a distributed.LocalCluster with 2 workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO

pytest.importorskip("prefect_dask")
distributed = pytest.importorskip("distributed")


def _params(tmp_path, address: str) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"].update({
        "runner": "dask", "dask_address": address, "out": str(tmp_path / "results"),
        "datasets": [{"name": "pics", "dir": str(tmp_path / "pics")}],
        "grid": [{"codec": "jpeg", "sweep": {"quality": [10, 60]}, "tables": ["rd"]},
                 {"codec": "webp", "settings": {"quality": 30}, "label": "WebP 30", "tables": ["table1"]}],
    })
    params["report"]["dataset"] = "pics"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def test_evaluate_runs_its_units_on_a_dask_cluster(tmp_path, monkeypatch, prefect_api):
    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    for i in range(3):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "pics" / f"p{i}.png")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        _params(tmp_path, cluster.scheduler_address)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GENCOMP_PARAMS", str(tmp_path / "params.yaml"))
        from flows.evaluate import evaluate_flow

        summary = evaluate_flow()
        ran_on = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert summary == {"rows": 9, "errors": 0}
    frame = pd.read_parquet(tmp_path / "results" / "results.parquet")
    assert len(frame) == 9 and frame["error"].fillna("").eq("").all()
    assert set(frame["label"]) == {"jpeg quality=10", "jpeg quality=60", "WebP 30"}
    assert "eval_unit" in ran_on, ran_on  # the units ran as tasks on the cluster
