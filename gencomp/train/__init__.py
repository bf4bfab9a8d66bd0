"""Training: one loop (loop.py) for the GAN (+ inversion encoder) and the VAE-GAN recipes, presets, checkpoints, logging.

Import :func:`gencomp.train.loop.train` where it is used; this package's import stays light.
"""

from gencomp.train.presets import PRESETS, resolve_preset

__all__ = ["PRESETS", "resolve_preset"]
