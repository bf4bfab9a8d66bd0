"""The hostile inputs of issue 16, against the shipped models: outcome, CPU seconds and peak memory of each.

    python benchmarks/hostile_inputs.py [--code DIR] [--cpu-limit 30] [--mem-limit-gb 6]

Builds each file in a temporary folder, then decodes it in a fresh process (``--code`` is the source tree
it imports, default this one; pass an older checkout, with ``--read-bytes``, for a before/after comparison)
under RLIMIT_CPU and
RLIMIT_AS, and prints one JSON line per input: the exception class (or ``ok``, or ``killed`` when a limit
stopped it), CPU seconds, and the peak RSS during the decode (VmHWM, reset just before it through
/proc/self/clear_refs) over the RSS just before it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from fuzz_decoders import varint  # the benchmarks' own LEB128 writer, free to write what the container refuses

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from gencomp.codecs import decode_file
from gencomp.codecs.base import load_model_cached, shipped_model_path
kind, path, cpu, mem = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for k in ("gan", "vaegan"):
    load_model_cached(shipped_model_path(k))

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
base = status_kb("VmRSS")
resource.setrlimit(resource.RLIMIT_CPU, (int(time.process_time()) + cpu, resource.RLIM_INFINITY))
resource.setrlimit(resource.RLIMIT_AS, (mem << 30, resource.RLIM_INFINITY))
t = time.process_time()
try:
    if kind == "model":
        from gencomp.models.store import load_model
        load_model(path)
    else:
        from pathlib import Path
        # a path: read header first (this tree); bytes: what `gencomp decompress` of an older tree did
        decode_file(Path(path) if sys.argv[6] == "path" else Path(path).read_bytes())
    outcome = "ok"
except MemoryError:
    outcome = "MemoryError"
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"outcome": outcome, "cpu_s": round(time.process_time() - t, 2),
                  "peak_over_baseline_mb": round((status_kb("VmHWM") - base) / 1024, 1)}))
"""


def _image(width: int, height: int):
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")


def build(tmp: Path) -> dict[str, tuple[str, Path]]:
    from PIL import Image

    from gencomp.codecs import get_codec
    from gencomp.codecs.base import shipped_model_path
    from gencomp.codecs.container import pack, unpack

    def repack(data: bytes, **changes) -> bytes:
        c = unpack(data)
        fields = dict(codec_id=c.codec_id, width=c.width, height=c.height, payload=c.payload,
                      fingerprint=c.fingerprint, params=c.params, version=c.version)
        return pack(**{**fields, **changes})

    image = _image(768, 512)
    gan = get_codec("gan-inversion", model=shipped_model_path("gan"), steps=0, bits=6, entropy="gaussian").encode(image)
    vae = get_codec("vaegan-c8", model=shipped_model_path("vaegan")).encode(image)
    files = {
        f"gan-inversion {len(gan)} B file declaring 8000x8000": repack(gan, width=8000, height=8000),
        f"gan-inversion {len(gan)} B file declaring 4800x4800 (under the pixel limit)": repack(gan, width=4800, height=4800),
        f"vaegan-c8 {len(vae)} B file declaring 8000x8000": repack(vae, width=8000, height=8000),
        f"vaegan-c8 {len(vae)} B file declaring 4800x4800 (under the pixel limit)": repack(vae, width=4800, height=4800),
        "vaegan-c8 file declaring 768x528 (one latent row more than its payload)": repack(vae, height=528),
    }
    buf = io.BytesIO()
    Image.new("RGB", (7900, 7900), (90, 120, 200)).save(buf, format="JPEG", quality=75)
    files[f"jpeg header 64x48 over a 7900x7900 JPEG payload ({len(buf.getvalue())} B)"] = pack(
        codec_id=1, width=64, height=48, payload=buf.getvalue(), params={"q": 75})
    out = {}
    for name, data in files.items():
        path = tmp / f"f{len(out)}.gcz"
        path.write_bytes(data)
        out[name] = ("gcz", path)
    for width, height, label in ((64, 48, "64x48"), (8000, 8000, "8000x8000")):
        path = tmp / f"big-{label}.gcz"
        head = pack(codec_id=1, width=width, height=height, payload=b"", params={"q": 75})[:-5]
        size = 400 << 20
        head += varint(size)
        crc = zlib.crc32(head)
        with open(path, "wb") as f:
            f.write(head)
            chunk = bytes(1 << 20)
            for _ in range(400):
                f.write(chunk)
                crc = zlib.crc32(chunk, crc)
            f.write(crc.to_bytes(4, "little"))
        out[f"400 MB .gcz, jpeg header {label}"] = ("gcz", path)
    import torch

    state = torch.load(shipped_model_path("gan"), weights_only=True)
    state["config"]["generator"]["width"] = 200_000
    torch.save(state, tmp / "wide.pt")
    out["gan model file whose config says width 200000"] = ("model", tmp / "wide.pt")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--cpu-limit", type=int, default=30)
    parser.add_argument("--mem-limit-gb", type=int, default=6)
    parser.add_argument("--read-bytes", action="store_true",
                        help="decode the file's bytes, as the CLI did before decode_file took a path")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, path) in build(Path(tmp)).items():
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(args.code.resolve()), kind, str(path),
                                   str(args.cpu_limit), str(args.mem_limit_gb),
                                   "bytes" if args.read_bytes else "path"], capture_output=True, text=True)
            lines = proc.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if proc.returncode == 0 and lines else \
                {"outcome": f"killed (exit {proc.returncode})"}
            print(json.dumps({"input": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
