"""Stage `train_vaegan`: `python -m flows.train_vaegan` (see flows/train.py)."""

from flows.train import train_vaegan_flow

if __name__ == "__main__":
    train_vaegan_flow()
