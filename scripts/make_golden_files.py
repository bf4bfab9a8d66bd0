"""Write the golden ``.gcz`` files of tests/test_golden_files.py: one per learned bitstream and storage.

    python scripts/make_golden_files.py tests/fixtures/golden            # all of them, and the models
    python scripts/make_golden_files.py tests/fixtures/golden NAME ...   # only these, with the models there

Each file is a small photo-like image encoded with a tiny seeded model that is written beside it (so the files
pin the format and the decoders' arithmetic, not whichever model ships). ``golden.json`` records, per file, the
sha256 of the file and of the pixels it decodes to on the machine that wrote it. Rerun it whole only for a
deliberate format change -- which also bumps the container's VERSION -- and keep the old files' refusal tested.
A new codec parameter that old files lack (the GAN's tile overlap ``o``, its colour parameters ``k``) adds its
own file by name and leaves the others, which must go on decoding as they did.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import MAGIC
from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, save_gan, save_vaegan
from gencomp.models.hyperprior import Hyperprior

# name -> (codec, settings, model kind)
GOLDEN = {
    "vaegan-c4-entropy.gcz": ("vaegan", {"channels": 4, "refine_steps": 0}, "vaegan"),
    "vaegan-c2-entropy-q2.gcz": ("vaegan", {"channels": 2, "quant_scale": 2.0, "refine_steps": 0}, "vaegan"),
    "vaegan-c4-raw16.gcz": ("vaegan", {"channels": 4, "storage": "raw", "raw_bits": 16, "refine_steps": 0}, "vaegan"),
    "vaegan-hp-c4-entropy.gcz": ("vaegan", {"channels": 4, "refine_steps": 0}, "vaegan-hp"),
    "vaegan-hp-c2-entropy-q2.gcz": ("vaegan", {"channels": 2, "quant_scale": 2.0, "refine_steps": 0}, "vaegan-hp"),
    # the hyperprior with a checkerboard context: two y sections, format version 3
    "vaegan-cb-c4-entropy.gcz": ("vaegan", {"channels": 4, "refine_steps": 0}, "vaegan-cb"),
    "vaegan-cb-c2-entropy-q2.gcz": ("vaegan", {"channels": 2, "quant_scale": 2.0, "refine_steps": 0}, "vaegan-cb"),
    # the GAN files were written by float32 searches (before "precision" defaulted to auto): pinned so
    # re-encoding them compares like with like
    # written before tiles could overlap or carry colour parameters: edge to edge, z alone
    "gan-inversion-float32.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "overlap": 0, "colour": "none"}, "gan"),
    "gan-inversion-8bit.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "bits": 8, "overlap": 0, "colour": "none"}, "gan"),
    "gan-inversion-entropy.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "bits": 8, "entropy": "gaussian", "overlap": 0,
                                                    "colour": "none"}, "gan"),
    # overlapping tiles, blended (4 px of the tiny model's 32-px tiles), before the colour parameters
    "gan-inversion-overlap-8bit.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "bits": 8, "colour": "none"}, "gan"),
    # the default: blended tiles, each with its gain and offset per channel, z after them (fixed-length or coded)
    "gan-inversion-colour-8bit.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "bits": 8}, "gan"),
    "gan-inversion-colour-entropy.gcz": ("gan-inversion", {"steps": 3, "precision": "float32", "bits": 8, "entropy": "gaussian"}, "gan"),
}

MODEL_FILES = {"vaegan": "vaegan-tiny.pt", "gan": "gan-tiny.pt", "vaegan-hp": "vaegan-hp-tiny.pt",
               "vaegan-cb": "vaegan-cb-tiny.pt"}


def golden_image() -> Image.Image:
    y, x = np.mgrid[0:40, 0:72]
    rgb = np.stack([x * 3 + 20 * np.sin(y / 3), y * 5 + 10 * np.cos(x / 4), (x + y) * 2], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def pixels_sha256(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image, dtype=np.uint8).tobytes()).hexdigest()


def write_models(folder: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    prior = GaussianChannelPrior(4)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
        prior.log_scale.copy_(torch.tensor([0.7, 0.4, 0.2, 0.0]))
    model = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel")
    with torch.no_grad():  # a random encoder's latents are tiny: scale them so they span many symbols
        model.to_moments.weight.mul_(40.0)
        model.decoder[0].weight.mul_(0.2)
    save_vaegan(folder / "vaegan-tiny.pt", model=model, prior=prior, quant_step=0.5, prior_fitted=True)
    torch.manual_seed(1)
    generator = Generator(latent_dim=8, tile=32, width=4, norm="batch").eval()
    save_gan(folder / "gan-tiny.pt", generator=generator, encoder=InversionEncoder(8, 32, 4))
    # the hyperprior model after the others, so their seeds and bytes are what they were before it existed
    torch.manual_seed(2)
    hp_model = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel",
                      entropy_model="hyperprior")
    hyper = Hyperprior(latent_channels=4, channels=8)
    with torch.no_grad():  # as above, and z spread over several symbols
        hp_model.to_moments.weight.mul_(40.0)
        hp_model.decoder[0].weight.mul_(0.2)
        hyper.h_a[-1].weight.mul_(10.0)
    save_vaegan(folder / "vaegan-hp-tiny.pt", model=hp_model, prior=None, quant_step=1.0, prior_fitted=False,
                hyperprior=hyper)
    write_checkerboard_model(folder)
    return {kind: folder / name for kind, name in MODEL_FILES.items()}


def write_checkerboard_model(folder: Path) -> None:
    """The tiny hyperprior model with a checkerboard context whose correction is not zero (a fresh one's is)."""
    torch.manual_seed(3)
    model = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel",
                   entropy_model="hyperprior")
    hyper = Hyperprior(latent_channels=4, channels=8, context="checkerboard")
    with torch.no_grad():
        model.to_moments.weight.mul_(40.0)
        model.decoder[0].weight.mul_(0.2)
        hyper.h_a[-1].weight.mul_(10.0)
        hyper.checkerboard.fuse[-1].weight.normal_(0.0, 0.01)
        hyper.checkerboard.fuse[-1].bias.normal_(0.0, 0.05)
    save_vaegan(folder / MODEL_FILES["vaegan-cb"], model=model, prior=None, quant_step=1.0, prior_fitted=False,
                hyperprior=hyper)


def main(folder: str, names: list[str]) -> int:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names) - set(GOLDEN))
    if unknown:
        print(f"no golden file named {unknown}; known: {sorted(GOLDEN)}", file=sys.stderr)
        return 2
    if names:  # the models and the other files stay as they are
        models = {kind: out / name for kind, name in MODEL_FILES.items()}
        if not models["vaegan-cb"].exists():  # added after the others: written beside them, they stay
            write_checkerboard_model(out)
        record = json.loads((out / "golden.json").read_text())
    else:
        models = write_models(out)
        record = {"files": {}}
    image = golden_image()
    for name in names or GOLDEN:
        codec, settings, kind = GOLDEN[name]
        data = get_codec(codec, model=models[kind], **settings).encode(image)
        (out / name).write_bytes(data)
        decoded = decode_file(data, model=models[kind])
        record["files"][name] = {"codec": codec, "model": models[kind].name, "version": data[len(MAGIC)],
                                 "file_sha256": hashlib.sha256(data).hexdigest(),
                                 "pixels_sha256": pixels_sha256(decoded), "size": list(decoded.size)}
    (out / "golden.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(names or GOLDEN)} golden file(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/golden", sys.argv[2:]))
