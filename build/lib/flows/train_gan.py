"""Stage `train_gan`: `python -m flows.train_gan` (see flows/train.py)."""

from flows.train import train_gan_flow

if __name__ == "__main__":
    train_gan_flow()
