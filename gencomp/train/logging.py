"""What a training run reports while it runs: per-step metrics file, dvclive, a progress bar.

Files under ``out_dir``:
- ``metrics.jsonl``: one JSON object per training step (``step``, ``epoch``, ``phase`` and every loss), always
  written by rank 0; on resume, lines after the checkpoint's step are dropped first, so the file reads as one
  uninterrupted run (the resume test compares it line by line);
- ``val.jsonl``: one object per validation (``step`` plus PSNR/SSIM/bpp metrics);
- ``dvclive/``: dvclive's metrics (``train/<loss>`` every ``log_every`` steps, ``val/<metric>``), the sample
  grid image ``samples.png`` and its summary. dvclive is opened with ``save_dvc_exp=False, dvcyaml=None``
  so it never touches git or dvc.yaml and works inside ``dvc repro``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gencomp.atomic import write_bytes_atomic

METRICS_NAME = "metrics.jsonl"
VAL_NAME = "val.jsonl"
SAMPLES_NAME = "samples.png"


def image_grid(images: torch.Tensor, *, columns: int = 8) -> Image.Image:
    """(N, 3, H, W) floats in [0, 1] -> one RGB image with the tiles in rows of ``columns``, 2px gaps."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, _, h, w = images.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    gap = 2
    canvas = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, 3), 255, dtype=np.uint8)
    tiles = (images.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        canvas[y:y + h, x:x + w] = tile
    return Image.fromarray(canvas)


def _inside_dvc_project(start: Path) -> bool:
    """Whether ``start`` or a folder above it holds a ``.dvc`` directory (what dvc's Repo() looks for)."""
    return any((folder / ".dvc").is_dir() for folder in (start, *start.parents))


def _live_class(*, inside_dvc: bool):
    """dvclive's Live, or outside a DVC project a Live that skips its DVC integration.

    Outside a DVC project but inside a git repository, Live() runs ``dvc init`` there and stages the result
    (dvclive's auto-init, treeverse/dvclive#539): `gencomp train` run in someone's own git checkout must not
    do that. Without the integration Live still writes every file we use (metrics, plots, images); it only
    loses the experiment bookkeeping, which ``save_dvc_exp=False`` turns off anyway.
    """
    from dvclive import Live  # lazy: dvclive imports a lot, and only rank 0 needs it

    if inside_dvc:
        return Live

    class LiveWithoutDvc(Live):
        def _init_dvc(self) -> None:  # the one step of Live.__init__ that may `dvc init`
            self._dvc_file = self._init_dvc_file()

    return LiveWithoutDvc


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only lines with step <= last_step (the ones the checkpoint already accounts for)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError):
            break  # a line cut short by the kill: everything after it is from after the checkpoint too
    write_bytes_atomic(path, ("\n".join(kept) + "\n" if kept else "").encode())


class TrainLogger:
    """Rank 0 logs; other ranks get a logger whose methods do nothing (``enabled=False``)."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None, total_steps: int,
                 log_every: int, progress: bool, params: dict[str, Any]):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.log_every = log_every
        self._live = None
        self._progress = None
        self._metrics_fh = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics, val = self.out_dir / METRICS_NAME, self.out_dir / VAL_NAME
        if resume_step is None:
            metrics.unlink(missing_ok=True)
            val.unlink(missing_ok=True)
        else:
            _truncate_jsonl(metrics, resume_step)
            _truncate_jsonl(val, resume_step)
        self._metrics_fh = metrics.open("a")
        self._val_path = val

        try:
            live_class = _live_class(inside_dvc=_inside_dvc_project(Path.cwd()))
        except ImportError as exc:
            # a bare training machine (a lent GPU box, say) may lack dvclive and its DVC dependencies: the
            # jsonl files and the sample grid are the record there, and nothing else is lost
            print(f"note: dvclive is not importable ({exc}); logging to {METRICS_NAME}, {VAL_NAME} and "
                  f"{SAMPLES_NAME} only", file=sys.stderr)
            live_class = None
        if live_class is not None:
            self._live = live_class(dir=str(self.out_dir / "dvclive"), resume=resume_step is not None,
                                    save_dvc_exp=False, dvcyaml=None)
            self._live.log_params({k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))})
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            )
            self._progress.start()
            start = resume_step or 0
            self._task = self._progress.add_task("train", total=total_steps, completed=start, rate="", info="")
        self._t0 = time.perf_counter()
        self._steps_timed = 0

    def log_step(self, step: int, epoch: int, phase: str, losses: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "epoch": epoch, "phase": phase, **losses}
        self._metrics_fh.write(json.dumps(record) + "\n")
        self._metrics_fh.flush()
        if step % self.log_every == 0 and self._live is not None:
            self._live.step = step
            for name, value in losses.items():
                self._live.log_metric(f"train/{name}", value)
            self._live.next_step()
        if self._progress is not None:
            self._steps_timed += 1
            rate = self._steps_timed / max(time.perf_counter() - self._t0, 1e-9)
            info = " ".join(f"{k}={v:.4g}" for k, v in list(losses.items())[:3])
            self._progress.update(self._task, completed=step, rate=f"{rate:.2f} steps/s", info=f"{phase} {info}")

    def log_val(self, step: int, metrics: dict[str, float], samples: Image.Image | None) -> None:
        if not self.enabled:
            return
        with self._val_path.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._live is None:
            if samples is not None:
                samples.save(self.out_dir / SAMPLES_NAME)
            return
        self._live.step = step
        for name, value in metrics.items():
            self._live.log_metric(f"val/{name}", value)
        if samples is not None:
            self._live.log_image(SAMPLES_NAME, samples)
        self._live.next_step()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None
        if self._live is not None:
            self._live.end()
            self._live = None
