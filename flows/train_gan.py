"""Stage `train_gan`: `python -m flows.train_gan` (see flows/train.py)."""

from flows.common import run_stage
from flows.train import train_gan_flow

if __name__ == "__main__":
    run_stage(train_gan_flow)
