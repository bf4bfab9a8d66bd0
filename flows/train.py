"""Flows `train-gan`, `train-vaegan` and `train-domain`.

Two ways in, one training code path:
- `dvc repro` runs `python -m flows.train_gan` / `flows.train_vaegan`: the flow trains with the preset named in
  params.yaml and writes the stage's outputs.
- A Prefect deployment (`prefect deployment run train-vaegan/demo`) runs the same flow with ``via_dvc=True``:
  the flow writes the preset and overrides into params.yaml (comments kept), then runs `dvc exp run <stage>`,
  so the parameters land in params.yaml, the outputs in DVC's cache and the lineage in dvc.lock, exactly as for `dvc repro`.

`train-domain` trains one model kind on one enabled domain (`python -m flows.train_domain gan faces`, the
stage train_domain@gan-faces); its settings are the domain's entry under train_domains.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task

from flows.common import params, run_logged
from gencomp.atomic import write_with
from gencomp.config import load_params


@task(name="train")
def train_task(kind: str, data_dir: str, out_dir: str, preset: str, overrides: dict) -> dict:
    from gencomp.train.loop import train

    return train(kind, data_dir=Path(data_dir), out_dir=Path(out_dir), preset=preset,
                 overrides=overrides, resume=False, progress=sys.stdout.isatty())


def write_params(updates: dict[str, object], path=None) -> None:
    """Set dotted keys of params.yaml in place, keeping its comments and layout (ruamel round-trip), so a
    deployment run leaves a params.yaml a person can still read, and DVC sees exactly what changed."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from flows.common import params_file

    path = Path(path or params_file())
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold the long one-line grid entries
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = yaml.load(path.read_text())
    for dotted, value in updates.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        if isinstance(value, dict):  # written inline, like the `overrides: {}` it replaces
            value = CommentedMap(value)
            value.fa.set_flow_style()
        node[leaf] = value
    def dump_checked(tmp: str) -> None:
        with open(tmp, "w") as fh:
            yaml.dump(data, fh)
        load_params(tmp)  # an invalid value is refused before params.yaml is touched

    write_with(path, dump_checked)


@task(name="dvc-exp-run")
def dvc_exp_run(stage: str, updates: dict) -> str:
    write_params(updates)
    # `dvc exp run` records the run as an experiment and applies its outputs and dvc.lock to the workspace
    return run_logged(["dvc", "exp", "run", stage])


def _train(kind: str, preset: str | None, overrides: dict | None, via_dvc: bool) -> dict:
    section = f"train_{kind}"
    if via_dvc:
        updates: dict[str, object] = {f"{section}.overrides": dict(overrides or {})}
        if preset is not None:
            updates[f"{section}.preset"] = preset
        return {"dvc": dvc_exp_run(section, updates)}
    p = getattr(params(), section)
    if preset is not None or overrides:
        raise ValueError("preset/overrides are deployment parameters; under dvc repro they come from params.yaml")
    summary = train_task(kind, params().shard.out, p.out, p.preset, dict(p.overrides))
    print(f"train {kind} summary: {summary}")
    return summary


def _train_domain(kind: str, domain: str) -> dict:
    """The ``kind`` model of one enabled domain, on its shard set, with its train_domains presets (the tile or
    crop set to the domain's side by gencomp.config)."""
    p = params()
    if domain not in p.domains.enabled:
        raise ValueError(f"domain {domain!r} is not in domains.enabled ({p.domains.enabled or 'none'})")
    if kind not in p.train_domains.kinds:
        raise ValueError(f"model kind {kind!r} is not in train_domains.kinds ({p.train_domains.kinds or 'none'})")
    preset, overrides = p.domain_training(kind, domain)
    data_dir, out_dir = p.domains.shards_dir(domain), p.train_domains.model_dir(kind, domain)
    summary = train_task(kind, str(data_dir), str(out_dir), preset, overrides)
    write_domain_sidecar(Path(summary["model_path"]), summary["fingerprint"], data_dir)
    print(f"train {kind} on {domain} summary: {summary}")
    return summary


def write_domain_sidecar(model_path: Path, fingerprint: str, data_dir: Path) -> Path:
    """``<model>.json`` beside the model, in the zoo's sidecar format: the training domain, its terms of use
    and the shard manifest's hash, from the domain's shard manifest. The report reads the domain from it
    (gencomp.models.zoo.model_domain), so a pipeline-trained domain model lands in the cross-domain matrix;
    the terms travel with the file."""
    import hashlib
    import json

    from gencomp.atomic import write_bytes_atomic
    from gencomp.data.shards import MANIFEST_NAME

    manifest_bytes = (data_dir / MANIFEST_NAME).read_bytes()
    record = json.loads(manifest_bytes).get("domain") or {}
    spec = record.get("spec") or {}
    sidecar = {"domain": spec.get("name", data_dir.name), "terms": spec.get("terms", ""), "fingerprint": fingerprint,
               "data": {"shards_manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                        "source_sha256": record.get("source_sha256"),
                        "split_counts": json.loads(manifest_bytes).get("split_counts")}}
    path = model_path.with_suffix(".json")
    write_bytes_atomic(path, (json.dumps(sidecar, indent=2) + "\n").encode())
    return path


@flow(name="train-domain", log_prints=True)
def train_domain_flow(kind: str, domain: str) -> dict:
    return _train_domain(kind, domain)


@flow(name="train-gan", log_prints=True)
def train_gan_flow(preset: str | None = None, overrides: dict | None = None, via_dvc: bool = False) -> dict:
    return _train("gan", preset, overrides, via_dvc)


@flow(name="train-vaegan", log_prints=True)
def train_vaegan_flow(preset: str | None = None, overrides: dict | None = None, via_dvc: bool = False) -> dict:
    return _train("vaegan", preset, overrides, via_dvc)
