"""Fuzz the .gcz decoders: mutated headers and payloads, per codec family; count crashes, hangs and memory.

    python benchmarks/fuzz_decoders.py [--inputs 100000] [--families classical,gan,vaegan] [--seed 0]
                                       [--hang-s 10] [--scaling]

For each family, valid seed files (two image sizes; several storage modes; small random models of the real
architectures, so a decode takes milliseconds) are mutated ``--inputs`` times and decoded in-process with
``gencomp.codecs.decode_file``. Mutations (one or two per input):

- header fields, CRC recomputed so the mutation reaches the checks behind it: width/height (0, 1, off by a
  few, x2, x100, 8000, 65535, 2**32, 2**40), codec id (the family's others, other families', unknown),
  version, fingerprint bytes, the params block (byte flips, values replaced by extreme ints, NaN/inf/negative
  floats, strings, dropped or added keys), the payload length field;
- payload, CRC recomputed: bit flips, byte runs overwritten, truncation or extension by 1..64 bytes or by
  half, a 32-bit word dropped or appended (what an ANS stream cut short or padded looks like), another
  seed's payload;
- raw bit flips and truncations anywhere, CRC left as it is.

Each input is classified: ``ok`` (decoded), ``refused`` (a ContainerError subclass, the documented refusal
errors), ``crash`` (any other exception: listed with a sample message), ``hang`` (more than ``--hang-s``
seconds of CPU, stopped by a profiling timer). Memory: the worker's peak RSS over its RSS after the seeds
decoded once (VmHWM, reset then through /proc/self/clear_refs), and the largest image decoded and file read.
``--scaling`` also decodes valid files of growing size (shipped models, one fresh process each) and reports
the decode's peak RSS over the RSS before it, per pixel: the "stated multiple" of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILY_SEEDS = {
    "classical": [("jpeg", {"quality": 60}), ("webp", {"quality": 50}), ("avif", {"quality": 50}),
                  ("jxl", {"quality": 80})],
    "gan": [("gan-inversion", {"steps": 2, "bits": 32}), ("gan-inversion", {"steps": 2, "bits": 16}),
            ("gan-inversion", {"steps": 2, "bits": 6}),
            ("gan-inversion", {"steps": 2, "bits": 6, "entropy": "gaussian"})],
    "vaegan": [("vaegan", {}), ("vaegan-c2", {}), ("vaegan", {"storage": "raw"}),
               ("vaegan", {"storage": "raw", "raw_bits": 16}), ("vaegan", {"quant_scale": 2.0})],
}
SIZES = ((40, 24), (96, 64))
HUGE = (0, 1, 2, 7, 8000, 65535, 1 << 32, 1 << 40)


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def raw_pack(version: int, codec_id: int, fingerprint: bytes, width: int, height: int, params: bytes,
             payload: bytes, payload_len: int | None = None, reseal: bool = True) -> bytes:
    """The container layout with any field values, valid or not; a correct CRC when ``reseal``."""
    body = b"".join([b"\x89GCZ", bytes([version & 0xFF]), varint(codec_id), fingerprint, varint(width),
                     varint(height), varint(len(params)), params,
                     varint(len(payload) if payload_len is None else payload_len), payload])
    return body + struct.pack("<I", zlib.crc32(body) if reseal else random.getrandbits(32))


def params_block(items: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(varint(len(items)))
    for key, kind, value in items:
        out += bytes([len(key)]) + key.encode() + bytes([kind]) + value
    return bytes(out)


def zz(v: int) -> bytes:
    return varint((v << 1) if v >= 0 else ((-v << 1) - 1))


def param_items(params: dict) -> list[tuple[str, int, bytes]]:
    items = []
    for key, value in params.items():
        if isinstance(value, int):
            items.append((key, 0, zz(value)))
        elif isinstance(value, float):
            items.append((key, 1, struct.pack("<f", value)))
        elif isinstance(value, str):
            items.append((key, 2, varint(len(value.encode())) + value.encode()))
        else:
            items.append((key, 3, varint(len(value)) + bytes(value)))
    return items


class Mutator:
    def __init__(self, seeds: list, ids: list[int], rng: random.Random):
        self.seeds, self.ids, self.rng = seeds, ids, rng

    def header(self, c, fields: dict) -> None:
        r = self.rng
        kind = r.randrange(7)
        if kind == 0:
            key = r.choice(["width", "height"])
            base = fields[key]
            fields[key] = r.choice([r.choice(HUGE), base + r.randint(-3, 3), base * 2, base * 100,
                                    max(1, base // 2), r.randint(1, 20000)])
            if fields[key] < 0:
                fields[key] = 0
        elif kind == 1:
            fields["codec_id"] = r.choice(self.ids + [r.randrange(0, 300), 1 << 33])
        elif kind == 2:
            fields["version"] = r.randrange(256)
        elif kind == 3:
            fp = bytearray(fields["fingerprint"])
            fp[r.randrange(8)] ^= 1 << r.randrange(8)
            fields["fingerprint"] = bytes(fp)
        elif kind == 4:
            block = bytearray(fields["params"])
            for _ in range(r.randint(1, 3)):
                if block:
                    block[r.randrange(len(block))] = r.randrange(256)
            fields["params"] = bytes(block)
        elif kind == 5:
            items = param_items(c.params)
            choice = r.randrange(4)
            if choice == 0 and items:
                items.pop(r.randrange(len(items)))
            elif choice == 1:
                items.append((r.choice(["c", "s", "q", "b", "e", "m", "x"]), 0, zz(r.choice([-1, 0, 3, 99, 1 << 40]))))
            else:
                key = r.choice(list(c.params) or ["q"])
                items = [it for it in items if it[0] != key]
                value = r.choice([
                    (0, zz(r.choice([-(1 << 62), -1, 0, 1, 2, 7, 13, 33, 255, 1 << 31, (1 << 62) - 1]))),
                    (1, struct.pack("<f", r.choice([float("nan"), float("inf"), -1.0, 0.0, 1e-30, 1e30, 0.05, 20.0]))),
                    (2, varint(3) + b"abc"),
                    (3, varint(2) + b"\x00\xff"),
                ])
                items.append((key, *value))
            fields["params"] = params_block(items)
        else:
            fields["payload_len"] = max(0, len(fields["payload"]) + r.choice([-4, -1, 1, 4, 1 << 20]))

    def payload(self, fields: dict) -> None:
        r = self.rng
        p = bytearray(fields["payload"])
        kind = r.randrange(6)
        if kind == 0 and p:
            for _ in range(r.randint(1, 4)):
                bit = r.randrange(len(p) * 8)
                p[bit // 8] ^= 1 << (bit % 8)
        elif kind == 1 and p:
            start = r.randrange(len(p))
            for k in range(start, min(len(p), start + r.randint(1, 16))):
                p[k] = r.randrange(256)
        elif kind == 2:
            cut = r.choice([r.randint(1, 64), len(p) // 2])
            p = p[: max(0, len(p) - cut)]
        elif kind == 3:
            p += bytes(r.randrange(256) for _ in range(r.choice([1, 4, 64])))
        elif kind == 4:
            p = p[:-4] if r.random() < 0.5 else p + struct.pack("<I", r.getrandbits(32) | 1)
        else:
            p = bytearray(self.rng.choice(self.seeds)[1].payload)
        fields["payload"] = bytes(p)

    def __call__(self) -> tuple[bytes, str]:
        r = self.rng
        data, c = r.choice(self.seeds)
        roll = r.random()
        if roll < 0.1:  # raw damage, CRC not fixed
            b = bytearray(data)
            if r.random() < 0.5:
                for _ in range(r.randint(1, 3)):
                    bit = r.randrange(len(b) * 8)
                    b[bit // 8] ^= 1 << (bit % 8)
                return bytes(b), "raw-flip"
            return bytes(b[: r.randrange(len(b))]), "raw-truncate"
        fields = {"version": 1, "codec_id": c.codec_id, "fingerprint": c.fingerprint, "width": c.width,
                  "height": c.height, "params": params_block(param_items(c.params)), "payload": c.payload,
                  "payload_len": None}
        if roll < 0.75:
            self.header(c, fields)
            if r.random() < 0.2:
                self.header(c, fields)
            kind = "header"
        else:
            self.payload(fields)
            if r.random() < 0.3:
                self.header(c, fields)
            kind = "payload"
        return raw_pack(**fields), kind


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Hang(Exception):
    pass


def _on_timer(signum, frame):
    raise Hang()


def make_models(tmp: Path) -> dict:
    import torch

    from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, load_model
    from gencomp.models import save_gan, save_vaegan

    torch.manual_seed(0)
    save_gan(tmp / "gan.pt", generator=Generator(latent_dim=16, tile=16, width=8),
             encoder=InversionEncoder(16, 16, 8))
    save_vaegan(tmp / "vaegan.pt", model=VAEGAN(max_channels=28, channel_set=(28, 16, 8, 4, 2), width=8,
                                                 downsample=16), prior=GaussianChannelPrior(28), quant_step=1.0,
                prior_fitted=False)
    return {"gan": load_model(tmp / "gan.pt"), "vaegan": load_model(tmp / "vaegan.pt")}


def _image(width: int, height: int, seed: int = 1):
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")


def fuzz_family(family: str, inputs: int, seed: int, hang_s: float, models: dict) -> dict:
    from gencomp.codecs import REGISTRY, decode_file, get_codec
    from gencomp.codecs.container import ContainerError, unpack

    model = models.get(family)
    seeds = []
    for name, settings in FAMILY_SEEDS[family]:
        for w, h in SIZES:
            kwargs = {**settings, **({"model": model} if model is not None else {})}
            data = get_codec(name, **kwargs).encode(_image(w, h))
            seeds.append((data, unpack(data)))
    ids = sorted({cls.codec_id for cls in REGISTRY.codecs.values()})
    for data, _ in seeds:  # warm up: every code path allocated once before the baseline
        decode_file(data, model=model)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
    baseline_kb = _status_kb("VmRSS")
    mutate = Mutator(seeds, ids, random.Random(seed))
    outcomes, kinds, crashes, refusals = Counter(), Counter(), Counter(), Counter()
    crash_samples: dict[str, str] = {}
    max_pixels_decoded = max_file = 0
    slowest = 0.0
    signal.signal(signal.SIGPROF, _on_timer)
    t0 = time.perf_counter()
    for _ in range(inputs):
        data, kind = mutate()
        kinds[kind] += 1
        max_file = max(max_file, len(data))
        start = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, hang_s)
        try:
            image = decode_file(data, model=model)
            outcome = "ok"
            max_pixels_decoded = max(max_pixels_decoded, image.width * image.height)
        except Hang:
            outcome = "hang"
        except ContainerError as exc:
            outcome = "refused"
            refusals[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - what the fuzzer is for
            outcome = "crash"
            key = f"{type(exc).__name__}"
            crashes[key] += 1
            crash_samples.setdefault(key, str(exc)[:200])
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        slowest = max(slowest, time.process_time() - start)
        outcomes[outcome] += 1
    peak_kb = _status_kb("VmHWM")
    return {
        "family": family, "inputs": inputs, "wall_s": round(time.perf_counter() - t0, 1),
        "outcomes": dict(outcomes), "mutations": dict(kinds), "refusals": dict(refusals),
        "crashes": dict(crashes), "crash_samples": crash_samples, "slowest_cpu_s": round(slowest, 3),
        "baseline_rss_mb": round(baseline_kb / 1024, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_over_baseline_mb": round((peak_kb - baseline_kb) / 1024, 1),
        "largest_image_decoded_px": max_pixels_decoded, "largest_file_bytes": max_file,
    }


_SCALING_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from gencomp.codecs import decode_file
from pathlib import Path
path, model = Path(sys.argv[2]), sys.argv[3] or None

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

decode_file(Path(sys.argv[4]), model=model)  # a tiny file first: imports, model load, allocator warm
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
base = status_kb("VmRSS")
t = time.process_time()
image = decode_file(path, model=model)
print(json.dumps({"base_kb": base, "peak_kb": status_kb("VmHWM"), "cpu_s": time.process_time() - t,
                  "px": image.width * image.height}))
"""


def scaling(tmp: Path, sides=(256, 768, 1536), codecs=("jpeg", "gan-inversion", "vaegan-c8")) -> list[dict]:
    """Peak RSS over baseline when decoding valid files of growing size, shipped models, one process each."""
    from gencomp.codecs import get_codec
    from gencomp.codecs.base import shipped_model_path

    rows = []
    for name, settings, kind in (("jpeg", {"quality": 90}, None), ("gan-inversion", {"steps": 0, "bits": 6,
                                 "entropy": "gaussian"}, "gan"), ("vaegan-c8", {}, "vaegan")):
        if name not in codecs:
            continue
        model = str(shipped_model_path(kind)) if kind else ""
        codec = get_codec(name, **settings, **({"model": model} if model else {}))
        small = tmp / f"{name}-small.gcz"
        small.write_bytes(codec.encode(_image(64, 64)))
        for side in sides:
            path = tmp / f"{name}-{side}.gcz"
            path.write_bytes(codec.encode(_image(side, side * 3 // 4, seed=side)))
            out = subprocess.run([sys.executable, "-c", _SCALING_CHILD, str(ROOT), str(path), model, str(small)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            over = (r["peak_kb"] - r["base_kb"]) * 1024
            rows.append({"codec": name, "pixels": r["px"], "file_bytes": path.stat().st_size,
                         "peak_over_baseline_mb": round(over / 2**20, 1),
                         "bytes_per_pixel": round(over / r["px"], 1), "decode_cpu_s": round(r["cpu_s"], 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--families", default="classical,gan,vaegan", help="comma-separated; empty: none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=10.0)
    parser.add_argument("--scaling", action="store_true")
    parser.add_argument("--sides", default="256,768,1536", help="image widths of --scaling (height: 3/4)")
    parser.add_argument("--scaling-codecs", default="jpeg,gan-inversion,vaegan-c8")
    args = parser.parse_args()
    import tempfile

    import torch

    torch.set_num_threads(1)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = make_models(tmp)
        for family in [f for f in args.families.split(",") if f]:
            result = fuzz_family(family, args.inputs, args.seed, args.hang_s, models)
            print(json.dumps(result), flush=True)
            failed |= bool(result["crashes"]) or bool(result["outcomes"].get("hang"))
        if args.scaling:
            scaling(tmp, tuple(int(v) for v in args.sides.split(",")), tuple(args.scaling_codecs.split(",")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
