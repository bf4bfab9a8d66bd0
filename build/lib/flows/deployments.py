"""Serve every deployment from one long-lived process: `python -m flows.deployments`.

Deployments (run them with `prefect deployment run NAME`):
- `train-gan/<preset>`, `train-vaegan/<preset>`: the stage through DVC with that preset (`dvc exp run -S`);
- `evaluate/grid`: the evaluate stage through DVC;
- `pipeline/repro`: the full `dvc repro`;
- `rescrape/scheduled`: rescrape then `dvc repro`, on the cron schedule of params.yaml `deployments`.

The runner executes one flow run at a time (``limit=1``): every deployment touches the one DVC workspace.
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.common import params
from flows.evaluate import evaluate_flow
from flows.pipeline import pipeline_flow, rescrape_flow
from flows.train import train_gan_flow, train_vaegan_flow


def build_deployments():
    p = params().deployments
    deployments = []
    for preset in p.train_presets:
        for train_flow in (train_gan_flow, train_vaegan_flow):
            deployments.append(train_flow.to_deployment(
                name=preset, parameters={"preset": preset, "via_dvc": True},
                description=f"{train_flow.name} with the {preset!r} preset, recorded by DVC"))
    deployments.append(evaluate_flow.to_deployment(name="grid", parameters={"via_dvc": True}))
    deployments.append(pipeline_flow.to_deployment(name="repro"))
    deployments.append(rescrape_flow.to_deployment(
        name="scheduled", schedules=[Cron(p.rescrape_cron, timezone=p.timezone)],
        description=f"rescrape + dvc repro, cron {p.rescrape_cron!r} ({p.timezone})"))
    return deployments


def main() -> None:
    serve(*build_deployments(), limit=1)


if __name__ == "__main__":
    main()
