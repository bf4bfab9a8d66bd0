"""Training data: the shard loader (or injected datasets) as an endless, resumable stream of batches."""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gencomp.train.runtime import Runtime


@dataclass
class BatchStream:
    """Endless batches from an iterable dataset, pass after pass, that can restart mid-pass.

    A pass is one DataLoader iteration over ``epochs_per_pass`` epochs (the dataset's ``set_epochs``; 1 needs
    only ``set_epoch``): more than one keeps the workers running across epoch ends, which matters when epochs
    are short. ``epoch`` (the pass's first epoch) and ``batches`` (delivered in that pass) are the resume
    position. The DataLoader gets its own seeded torch.Generator so that creating an iterator never draws from
    the global RNG (which the checkpoint restores for the training noise).
    """

    dataset: Any
    _: KW_ONLY
    batch_size: int
    num_workers: int
    seed: int
    rank: int
    epoch: int = 0
    batches: int = 0
    pin_memory: bool = False
    epochs_per_pass: int = 1
    _it: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.epochs_per_pass > 1 and not hasattr(self.dataset, "set_epochs"):
            raise ValueError(f"epochs_per_pass={self.epochs_per_pass} needs a dataset with set_epochs(first, count)")

    def _open_epoch(self) -> None:
        if self.epochs_per_pass > 1:
            self.dataset.set_epochs(self.epoch, self.epochs_per_pass)
        elif hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            drop_last=True, generator=gen, pin_memory=self.pin_memory)
        self._it = iter(loader)
        for _ in range(self.batches):  # resume: skip what this epoch already delivered
            if next(self._it, None) is None:
                raise RuntimeError(f"resume: the pass from epoch {self.epoch} now holds fewer than {self.batches} "
                                   "batches; the dataset changed since the checkpoint")

    def next(self) -> torch.Tensor:
        empty_epochs = 0
        while True:
            if self._it is None:
                self._open_epoch()
            batch = next(self._it, None)
            if batch is not None:
                self.batches += 1
                return batch[0] if isinstance(batch, (list, tuple)) else batch
            empty_epochs = empty_epochs + 1 if self.batches == 0 else 0
            if empty_epochs >= 2:
                raise RuntimeError(f"the training data yields no full batch of {self.batch_size} crops")
            self.epoch += self.epochs_per_pass
            self.batches = 0
            self._it = None


def first_batches(dataset, batch_size: int, count: int) -> list[torch.Tensor]:
    """The first ``count`` batches of epoch 0: a fixed validation set, or the prior-fitting sample."""
    if dataset is None:
        return []
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        out.append(batch[0] if isinstance(batch, (list, tuple)) else batch)
        if len(out) >= count:
            break
    return out


def make_datasets(cfg: dict[str, Any], data_dir: str | os.PathLike | None, rt: Runtime, crop: int,
                  dataset=None, val_dataset=None):
    """(train, val, note): the shard loader unless the caller injected datasets; a missing val split only
    disables validation (``note`` says why)."""
    if dataset is not None:
        return dataset, val_dataset, None
    from gencomp.data.loader import ShardDataset  # lazy: the loader pulls in pyarrow

    train_ds = ShardDataset(Path(data_dir), "train", crop=crop, train=True, seed=cfg["seed"],
                            downscale_to=cfg["downscale_to"], rank=rt.rank if rt.ddp else None,
                            world_size=rt.world_size if rt.ddp else None,
                            crops_per_image=cfg["crops_per_image"])
    if val_dataset is not None:
        return train_ds, val_dataset, None
    try:
        # only rank 0 validates, on the whole split (the loader would otherwise pick up the DDP rank)
        val_ds = ShardDataset(Path(data_dir), "val", crop=crop, train=False, seed=cfg["seed"],
                              downscale_to=cfg["downscale_to"], rank=0, world_size=1)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return train_ds, None, f"no validation split ({exc})"
    return train_ds, val_ds, None
