"""Stage `train_vaegan`: `python -m flows.train_vaegan` (see flows/train.py)."""

from flows.common import run_stage
from flows.train import train_vaegan_flow

if __name__ == "__main__":
    run_stage(train_vaegan_flow)
