"""Copy a trained model into gencomp/assets as a zoo model that ships with the package.

    python scripts/ship_model.py RUN_DIR_OR_MODEL --kind vaegan --data SHARDS_DIR --command "gencomp train ..."
        [--name vaegan-faces] [--domain faces] [--terms "..."] [--validation FILE.json] [--half]

Writes gencomp/assets/<name>.pt (default name ``<kind>-default``: the model.pt of RUN_DIR, or the model file given,
byte for byte, or with --half its weights stored as float16) and <name>.json, the sidecar the zoo reads
(gencomp/models/zoo.py): the params and data hash that made it (preset, overrides, steps, shard manifest checksum
and split counts), its domain and the terms of use of its data, its fingerprint, validation metrics and the
command, so anyone can retrain it and compare. Validation numbers come from the run's train_summary.json, or from
``--validation`` (a JSON object in the same keys, e.g. measured after a run whose own validation was cut short).
A new zoo name also needs its row in gencomp/models/zoo.py ZOO.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "gencomp" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="training output folder (model.pt, train_summary.json) or a model file")
    parser.add_argument("--kind", choices=("gan", "vaegan"), required=True)
    parser.add_argument("--data", type=Path, required=True, help="the shards folder it was trained on")
    parser.add_argument("--command", required=True, help="the command line that trained it")
    parser.add_argument("--name", default=None, help="zoo name (default: <kind>-default)")
    parser.add_argument("--domain", default=None, help="training domain (default: the zoo row's)")
    parser.add_argument("--terms", default=None, help="terms of use of the training data (default: the zoo row's)")
    parser.add_argument("--corpus", default="", help="what the shards hold, in words")
    parser.add_argument("--validation", type=Path, default=None, help="validation metrics (JSON) when the run has none")
    parser.add_argument("--half", action="store_true",
                        help="store float weights as float16 (half the size; loading casts back to float32)")
    args = parser.parse_args()
    name = args.name or f"{args.kind}-default"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise SystemExit(f"zoo name {name!r} must be lower-case letters, digits and '-'")

    import torch

    from gencomp.atomic import write_text_atomic
    from gencomp.models.store import load_model, save_model

    model_path = args.source / "model.pt" if args.source.is_dir() else args.source
    loaded = load_model(model_path)  # refuses a corrupt or foreign file before it ships
    if loaded.kind != args.kind:
        raise SystemExit(f"{model_path} is a {loaded.kind!r} model, not {args.kind!r}")
    summary_path = model_path.parent / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    validation = json.loads(args.validation.read_text()) if args.validation else summary.get("val")
    manifest_bytes = (args.data / "_manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    ASSETS.mkdir(parents=True, exist_ok=True)
    target = ASSETS / f"{name}.pt"
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    if args.half:
        states = {part: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
                  for part, sd in payload["state_dict"].items()}
        save_model(target, kind=payload["kind"], config=payload["config"], state_dict=states,
                   metadata={**payload.get("metadata", {}), "weights_dtype": "float16"})
    else:
        shutil.copyfile(model_path, target)
    loaded = load_model(target)
    dtype = (payload.get("metadata") or {}).get("weights_dtype", "float32")
    info = {
        "kind": args.kind,
        "fingerprint": loaded.fingerprint,
        "bytes": target.stat().st_size,
        "weights_dtype": "float16" if args.half else dtype,
        "trained_with": {"command": args.command, "preset": summary.get("preset", (payload.get("metadata") or {}).get("preset")),
                         "steps": summary.get("step", (payload.get("metadata") or {}).get("steps")),
                         "config": summary.get("config"), "elapsed_s": summary.get("elapsed_s"),
                         "device": summary.get("device"), "machine": f"{platform.machine()}, {platform.system()}"},
        "data": {"shards_manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                 "split_counts": manifest.get("split_counts"), "corpus": args.corpus},
        "validation": validation,
        "shipped_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if args.domain:
        info["domain"] = args.domain
    if args.terms:
        info["terms"] = args.terms
    write_text_atomic(ASSETS / f"{name}.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: info[k] for k in ("kind", "fingerprint", "bytes")} | {"name": name}))


if __name__ == "__main__":
    main()
