"""Copy a trained model into gencomp/assets as the default weights that ship with the package.

    python scripts/ship_default_model.py RUN_DIR --kind vaegan --data SHARDS_DIR --command "gencomp train ..."

Writes gencomp/assets/<kind>-default.pt (the run's model.pt, byte for byte, or with --half its weights
stored as float16) and <kind>-default.json: the
params and data hash that made it (preset, overrides, steps, shard manifest checksum and split counts),
its fingerprint, validation metrics, and the command, so anyone can retrain it and compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "gencomp" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="training output folder (model.pt, train_summary.json)")
    parser.add_argument("--kind", choices=("gan", "vaegan"), required=True)
    parser.add_argument("--data", type=Path, required=True, help="the shards folder it was trained on")
    parser.add_argument("--command", required=True, help="the command line that trained it")
    parser.add_argument("--corpus", default="", help="what the shards hold, in words")
    parser.add_argument("--half", action="store_true",
                        help="store float weights as float16 (half the size; loading casts back to float32)")
    args = parser.parse_args()

    import torch

    from gencomp.atomic import write_text_atomic
    from gencomp.models.store import load_model, save_model

    model_path = args.run_dir / "model.pt"
    loaded = load_model(model_path)  # refuses a corrupt or foreign file before it ships
    if loaded.kind != args.kind:
        raise SystemExit(f"{model_path} is a {loaded.kind!r} model, not {args.kind!r}")
    summary = json.loads((args.run_dir / "train_summary.json").read_text())
    manifest_bytes = (args.data / "_manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    ASSETS.mkdir(parents=True, exist_ok=True)
    target = ASSETS / f"{args.kind}-default.pt"
    if args.half:
        payload = torch.load(model_path, map_location="cpu", weights_only=True)
        states = {part: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
                  for part, sd in payload["state_dict"].items()}
        save_model(target, kind=payload["kind"], config=payload["config"], state_dict=states,
                   metadata={**payload.get("metadata", {}), "weights_dtype": "float16"})
    else:
        shutil.copyfile(model_path, target)
    loaded = load_model(target)
    info = {
        "kind": args.kind,
        "fingerprint": loaded.fingerprint,
        "bytes": target.stat().st_size,
        "weights_dtype": "float16" if args.half else "float32",
        "trained_with": {"command": args.command, "preset": summary.get("preset"), "steps": summary.get("step"),
                         "config": summary.get("config"), "elapsed_s": summary.get("elapsed_s"),
                         "device": summary.get("device"), "machine": f"{platform.machine()}, {platform.system()}"},
        "data": {"shards_manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                 "split_counts": manifest.get("split_counts"), "corpus": args.corpus},
        "validation": summary.get("val"),
        "shipped_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_text_atomic(ASSETS / f"{args.kind}-default.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: info[k] for k in ("kind", "fingerprint", "bytes")}))


if __name__ == "__main__":
    main()
