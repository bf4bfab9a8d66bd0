"""Stage `train_domain@<kind>-<domain>`: `python -m flows.train_domain <kind> <domain>` (see flows/train.py)."""

import sys

from flows.common import run_stage
from flows.train import train_domain_flow

if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m flows.train_domain <gan|vaegan> <domain>", file=sys.stderr)
        raise SystemExit(2)
    run_stage(lambda: train_domain_flow(sys.argv[1], sys.argv[2]))
