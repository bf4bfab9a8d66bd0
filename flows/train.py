"""Flows `train-gan` and `train-vaegan`.

Two ways in, one training code path:
- `dvc repro` runs `python -m flows.train_gan` / `flows.train_vaegan`: the flow trains with the preset named in
  params.yaml and writes the stage's outputs.
- A Prefect deployment (`prefect deployment run train-vaegan/demo`) runs the same flow with ``via_dvc=True``:
  the flow then asks DVC to run the stage (`dvc exp run -S <section>.preset=... <stage>`), so the parameters
  land in params.yaml, the outputs in DVC's cache and the lineage in dvc.lock, exactly as for `dvc repro`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import flow, task

from flows.common import params, run_logged


@task(name="train")
def train_task(kind: str, data_dir: str, out_dir: str, preset: str, overrides: dict) -> dict:
    from gencomp.train.loop import train

    return train(kind, data_dir=Path(data_dir), out_dir=Path(out_dir), preset=preset,
                 overrides=overrides, resume=False, progress=sys.stdout.isatty())


@task(name="dvc-stage")
def dvc_stage(stage: str, set_params: dict) -> str:
    cmd = ["dvc", "exp", "run"]
    for key, value in set_params.items():
        cmd += ["-S", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    cmd.append(stage)
    return run_logged(cmd)


def _train(kind: str, preset: str | None, overrides: dict | None, via_dvc: bool) -> dict:
    section = f"train_{kind}"
    if via_dvc:
        set_params = {}
        if preset is not None:
            set_params[f"{section}.preset"] = preset
        for key, value in (overrides or {}).items():
            set_params[f"{section}.overrides.{key}"] = value
        return {"dvc": dvc_stage(section, set_params)}
    p = getattr(params(), section)
    if preset is not None or overrides:
        raise ValueError("preset/overrides are deployment parameters; under dvc repro they come from params.yaml")
    summary = train_task(kind, params().shard.out, p.out, p.preset, dict(p.overrides))
    print(f"train {kind} summary: {summary}")
    return summary


@flow(name="train-gan", log_prints=True)
def train_gan_flow(preset: str | None = None, overrides: dict | None = None, via_dvc: bool = False) -> dict:
    return _train("gan", preset, overrides, via_dvc)


@flow(name="train-vaegan", log_prints=True)
def train_vaegan_flow(preset: str | None = None, overrides: dict | None = None, via_dvc: bool = False) -> dict:
    return _train("vaegan", preset, overrides, via_dvc)
