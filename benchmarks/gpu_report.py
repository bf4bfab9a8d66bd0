"""Summarise a `benchmarks/bench_gpu.sh` output folder as Markdown: tests, codec speed, and per training phase
the images/s and the GPU's load.

    python benchmarks/gpu_report.py OUT_DIR

Phases come from the ``[HH:MM:SS] begin NAME`` / ``end NAME`` lines of log.txt; the GPU load from
``nvidia-smi dmon -s um -o T`` (one line a second: SM busy %, memory-interface busy %, memory used in MB),
averaged over each phase's seconds. "SM %" is the share of time a kernel ran, not of the chip's arithmetic
peak, so a small model can read high and still leave most of the GPU idle.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_STAMP = re.compile(r"^\[(\d\d):(\d\d):(\d\d)\] (begin|end) (\S+)")


def _seconds(h: str, m: str, s: str) -> int:
    return int(h) * 3600 + int(m) * 60 + int(s)


def phases(log: Path) -> dict[str, tuple[int, int]]:
    """name -> (begin, end) in seconds of the day, from the log's stamps."""
    begin: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    for line in log.read_text().splitlines() if log.is_file() else []:
        if m := _STAMP.match(line):
            t = _seconds(*m.group(1, 2, 3))
            if m.group(4) == "begin":
                begin[m.group(5)] = t
            elif m.group(5) in begin:
                spans[m.group(5)] = (begin[m.group(5)], t + (86_400 if t < begin[m.group(5)] else 0))
    return spans


def dmon_samples(path: Path) -> list[dict[str, float]]:
    """One dict per dmon line: t (seconds of the day) and every numeric column (sm, mem, fb, ...)."""
    names: list[str] = []
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.startswith("#"):
            if not names and "gpu" in line.lower():
                names = [n.lower() for n in line.lstrip("#").split()]
            continue
        parts = line.split()
        if not names or len(parts) != len(names) or not re.fullmatch(r"\d\d:\d\d:\d\d", parts[0]):
            continue
        row = {"t": float(_seconds(*parts[0].split(":")))}
        for name, value in zip(names[1:], parts[1:]):
            try:
                row[name] = float(value)
            except ValueError:
                pass  # "-": not reported
        rows.append(row)
    return rows


def load_in(samples: list[dict[str, float]], begin: int, end: int) -> dict[str, float | None]:
    inside = [r for r in samples if begin <= r["t"] <= end]

    def mean(key: str) -> float | None:
        values = [r[key] for r in inside if key in r]
        return sum(values) / len(values) if values else None

    fb = [r["fb"] for r in inside if "fb" in r]
    return {"sm": mean("sm"), "mem": mean("mem"), "fb_max": max(fb) if fb else None, "samples": len(inside)}


def _fmt(value, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def report(out: Path) -> str:
    lines = [f"# GPU session: {out}", ""]
    gpu = out / "gpu.txt"
    lines += [f"GPU: {gpu.read_text().strip() if gpu.is_file() else 'unknown (no nvidia-smi)'}", ""]
    tests = out / "tests.txt"
    if tests.is_file():
        last = [line for line in tests.read_text().splitlines() if line.strip()]
        lines += [f"tests/test_gpu.py: {last[-1] if last else 'no output'}", ""]
    codecs = out / "codecs.json"
    if codecs.is_file():
        lines += ["| codec | settings | device | encode s | decode s | bpp | PSNR dB |", "|---|---|---|---|---|---|---|"]
        for r in json.loads(codecs.read_text()):
            settings = " ".join(f"{k}={v}" for k, v in r["settings"].items())
            lines.append(f"| {r['codec']} | {settings} | {r.get('device', '-')} | {r['encode_s']:.3f} | "
                         f"{r['decode_s']:.3f} | {r['bpp']:.4f} | {_fmt(r['psnr_db'], '.2f')} |")
        lines.append("")
    spans = phases(out / "log.txt")
    samples = dmon_samples(out / "dmon.txt")
    lines += ["| phase | wall s | steps | batch | img/s (all) | img/s (steady) | SM busy % | mem busy % | "
              "GPU MB max | val |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (begin, end) in spans.items():
        summary_path = out / f"{name}.summary.json"
        s = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        load = load_in(samples, begin, end)
        val = " ".join(f"{k}={v:.3g}" for k, v in sorted(s.get("val", {}).items()) if isinstance(v, float))
        lines.append(
            f"| {name} | {end - begin} | {s.get('steps_run', '-')} | {s.get('config', {}).get('batch_size', '-')} | "
            f"{_fmt(s.get('train_images_per_s'))} | {_fmt(s.get('steady_images_per_s'))} | {_fmt(load['sm'])} | "
            f"{_fmt(load['mem'])} | {_fmt(load['fb_max'])} | {val or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(report(Path(sys.argv[1])), end="")
