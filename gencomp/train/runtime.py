"""Where a training process runs: rank, device, threads, autocast, seeds, and the collectives DDP needs.

Under ``torchrun`` (env RANK / WORLD_SIZE / LOCAL_RANK) training runs DDP: gloo on CPU, nccl on GPU. Every
process setting changed here (torch threads, TF32 matmuls, the process group it created) is put back when the
:class:`Runtime` closes, so calling ``train()`` from a library or a test leaves the process as it found it.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gencomp.hardware import cpu_has_native_bf16
from gencomp.train.checkpoint import capture_rng, restore_rng


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runtime:
    """Rank, world size, device and autocast of this process; a context manager that restores what it changed."""

    def __init__(self, cfg: dict[str, Any]):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.ddp = self.world_size > 1
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.is_main = self.rank == 0
        self.compile = bool(cfg["compile"])
        self.bf16 = cfg["amp"] == "bf16" or (self.cuda and cfg["amp"] == "auto")
        # on a CPU, oneDNN's bf16 convolutions run ~1.8x faster on channels_last tensors (BENCHMARKS.md)
        self.channels_last = cfg["channels_last"] == "auto" and (self.cuda or self.bf16)
        self.owns_process_group = False
        if self.ddp and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.cuda else "gloo")
            self.owns_process_group = True
        self._threads_before = torch.get_num_threads()
        if not self.cuda and cfg["threads"] > 0:
            torch.set_num_threads(cfg["threads"])
        self._tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if self.cuda:  # TF32 tensor cores for the fp32 parts of training, until the Runtime closes
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        torch.set_num_threads(self._threads_before)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._tf32_before
        if self.owns_process_group:
            dist.destroy_process_group()
            self.owns_process_group = False

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    @property
    def bf16_emulated(self) -> bool:
        """bf16 autocast on a CPU that has no bf16 instructions: it runs, slower than fp32."""
        return self.bf16 and not self.cuda and not cpu_has_native_bf16()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def place(self, *modules: nn.Module) -> None:
        """Move freshly built modules to the device (and memory format) training uses."""
        for m in modules:
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)

    def distribute(self, module: nn.Module) -> nn.Module:
        """What the training step calls: DDP-wrapped for multi-process runs, compiled when asked."""
        if self.ddp:
            module = DDP(module, device_ids=[self.local_rank] if self.cuda else None)
        return torch.compile(module) if self.compile else module

    def all_reduce_mean_(self, tensors: Iterable[torch.Tensor]) -> None:
        if self.ddp:
            for t in tensors:
                dist.all_reduce(t)
                t.div_(self.world_size)

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        if self.ddp:
            dist.all_reduce(tensor)

    def out_of_time(self, t_start: float, max_time_s: float) -> bool:
        """True once ``max_time_s`` (> 0) seconds of training have passed, on every rank at the same step."""
        if max_time_s <= 0:
            return False
        late = time.perf_counter() - t_start >= max_time_s
        if self.ddp:  # every rank must stop at the same step, or the next collective would hang
            flag = torch.tensor([1.0 if late else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            late = bool(flag.item())
        return late

    def gather_positions(self, epoch: int, batches: int) -> list[dict[str, Any]]:
        """Every rank's RNG states and data position (rank order), for an exact multi-process resume."""
        mine = {"rng": capture_rng(), "epoch": epoch, "batches": batches}
        if not self.ddp:
            return [mine]
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    def restore_position(self, state: dict[str, Any], cfg: dict[str, Any]) -> tuple[int, int]:
        """This rank's RNG states back from a checkpoint; returns the (epoch, batches) to resume the data at.
        A checkpoint from another world size cannot give each rank its stream back: the next pass starts with
        fresh noise."""
        ranks = state["ranks"]
        if len(ranks) == self.world_size:
            restore_rng(ranks[self.rank]["rng"])
            return ranks[self.rank]["epoch"], ranks[self.rank]["batches"]
        seed_everything(cfg["seed"] + 1 + self.rank + 7919 * state["step"])
        return ranks[0]["epoch"] + cfg["epochs_per_pass"], 0

    def fork_rng(self):
        """Run a block (validation) without touching the training RNG streams of this rank."""
        return torch.random.fork_rng(devices=[self.device.index or 0] if self.cuda else [])
