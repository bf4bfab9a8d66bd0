"""Encode + decode time per codec on one 768x512 image, file size, bpp and container overhead.

    python benchmarks/bench_codecs.py [--image PATH] [--gan-model PATH] [--vaegan-model PATH]
                                      [--random-models] [--steps N ...] [--repeat N] [--threads N] [--json OUT.json]
                                      [--device cpu|cuda|auto] [--codecs NAME ...]

Without ``--image`` the image is scikit-image's astronaut, resized to 768x512 (Kodak's size). The generative
codecs use the shipped default models (gencomp/assets) unless model files are given. ``--random-models``
runs randomly initialised models of the constructors' default architectures instead: timings depend on the
architecture, not on the weights (rates and quality then mean nothing and are not printed). ``--steps`` may
list several search lengths for gan-inversion (the speed goal is stated with the encoder start). ``--device``
runs the generative codecs there (the classical ones always run on the CPU); ``--codecs`` keeps only the named
codecs (a GPU machine may lack the AVIF / JPEG XL plugins).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _image(path: str | None) -> Image.Image:
    from gencomp.data.images import open_image

    if path:
        return open_image(path)
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((768, 512), Image.Resampling.LANCZOS)


def _random_models(root: Path) -> tuple[Path, Path]:
    from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, save_gan, save_vaegan

    torch.manual_seed(0)
    gan, vaegan = root / "gan.pt", root / "vaegan.pt"
    save_gan(gan, generator=Generator(), encoder=InversionEncoder())
    save_vaegan(vaegan, model=VAEGAN(), prior=GaussianChannelPrior(28), quant_step=1.0, prior_fitted=False)
    return gan, vaegan


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image")
    parser.add_argument("--gan-model")
    parser.add_argument("--vaegan-model")
    parser.add_argument("--random-models", action="store_true", help="random-weight default architectures")
    parser.add_argument("--steps", type=int, nargs="+", default=[100], help="gan-inversion search steps")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the fast codecs (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--device", default="cpu", help="where the generative codecs run: cpu, cuda or auto")
    parser.add_argument("--codecs", nargs="+", help="only these codecs (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from gencomp.codecs import get_codec, unpack

    image = _image(args.image)
    pixels = image.width * image.height
    with tempfile.TemporaryDirectory() as tmp:
        from gencomp.codecs.base import shipped_model_path

        trained = not args.random_models
        if trained:
            gan = Path(args.gan_model) if args.gan_model else shipped_model_path("gan")
            vaegan = Path(args.vaegan_model) if args.vaegan_model else shipped_model_path("vaegan")
        else:
            gan, vaegan = _random_models(Path(tmp))
        channel_set = sorted(get_codec("vaegan", model=vaegan).loaded.config["model"]["channel_set"])
        cases = [
            ("jpeg", {"quality": 75}), ("jpeg", {"quality": 1}), ("jpeg", {"target_bpp": 0.5}),
            ("webp", {"quality": 80}), ("avif", {"quality": 75}), ("jxl", {"quality": 90}),
            ("vaegan", {"model": vaegan, "channels": channel_set[-1]}),
            ("vaegan", {"model": vaegan, "channels": channel_set[len(channel_set) // 2]}),
            ("vaegan", {"model": vaegan, "channels": channel_set[0]}),
            ("vaegan", {"model": vaegan, "channels": channel_set[len(channel_set) // 2], "storage": "raw"}),
        ]
        for steps in args.steps:
            cases += [("gan-inversion", {"model": gan, "steps": steps, "bits": 32}),
                      ("gan-inversion", {"model": gan, "steps": steps, "bits": 6, "entropy": "gaussian"})]
        if args.codecs:
            cases = [(name, settings) for name, settings in cases if name in args.codecs]
        rows = []
        for name, settings in cases:
            generative = name in ("vaegan", "gan-inversion")
            if generative:
                settings = {**settings, "device": args.device}
            codec = get_codec(name, **settings)
            runs = 1 if name == "gan-inversion" else args.repeat
            # warm-up (model load, plugin init); a small crop for the slow latent search
            warm = image.crop((0, 0, 64, 64)) if name == "gan-inversion" else image
            codec.decode(codec.encode(warm))
            enc_times, dec_times = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                data = codec.encode(image)
                t1 = time.perf_counter()
                decoded = codec.decode(data)
                t2 = time.perf_counter()
                enc_times.append(t1 - t0)
                dec_times.append(t2 - t1)
            container = unpack(data)
            row = {
                "codec": name,
                "settings": {k: v for k, v in settings.items() if k not in ("model", "device")},
                "device": codec.device if generative else "cpu",
                "encode_s": statistics.median(enc_times),
                "decode_s": statistics.median(dec_times),
                "bytes": len(data),
                "overhead_bytes": container.overhead,
                "bpp": len(data) * 8 / pixels,
                "psnr_db": None if generative and not trained else _psnr(decoded, image),
            }
            rows.append(row)
            print(f"  {name} {row['settings']}: encode {row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s",
                  file=sys.stderr, flush=True)
    where = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"image {image.width}x{image.height}, torch threads {args.threads}, generative codecs on {where}, "
          f"{'trained' if trained else 'random-weight'} generative models: {gan.name}, {vaegan.name}")
    print("| codec | settings | encode s | decode s | bytes | overhead B | bpp | PSNR dB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        settings = " ".join(f"{k}={v}" for k, v in r["settings"].items())
        psnr = "-" if r["psnr_db"] is None else f"{r['psnr_db']:.2f}"
        print(f"| {r['codec']} | {settings} | {r['encode_s']:.3f} | {r['decode_s']:.3f} | {r['bytes']} | "
              f"{r['overhead_bytes']} | {r['bpp']:.4f} | {psnr} |")
    if args.json_out:
        out = Path(args.json_out)
        tmp_out = out.with_name(f".{out.name}.tmp")
        tmp_out.write_text(json.dumps(rows, indent=2))
        os.replace(tmp_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
