"""The copies the web makes of a photo, for benchmarks/dedupe_accuracy.py (and tests): seeded, deterministic.

Every transform takes a decoded RGB original and a ``random.Random`` (corner, colour and text of an overlay)
and returns encoded JPEG bytes (q90 unless the transform is itself a re-encode). Names say the strength:
``crop_8`` removes 8 % of the width and of the height (4 % off each side), ``crop_8_corner`` the same 8 %
off the left and top only, ``crop_8_offset`` the 8 % split at a random share between the two sides of each
axis, ``rot_3`` rotates by 3 degrees (black corners, as most editors leave them), ``rot_3_expand`` rotates
onto a canvas grown to hold the whole turned image (PIL's ``expand=True``), ``rot_3_crop`` rotates and then
crops to the largest upright rectangle inside (no black corners), ``caption_s``/``caption_l`` paste an
opaque text box of 35 % x 10 % / 55 % x 16 % of the image in a random corner, ``watermark`` draws
half-transparent text in a corner. ``a+b`` applies ``a`` then ``b``.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

_WORDS = ("Breaking", "news", "photo", "credit", "Getty", "www.example.com", "SALE", "50%", "look", "meme",
          "when", "you", "the", "Monday", "agency", "exclusive", "2026", "via", "@someone")


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _crop(img, fx, fy, ax=0.5, ay=0.5):
    """Remove ``fx`` of the width and ``fy`` of the height; ``ax``/``ay``: share of it taken at the left/top."""
    dx, dy = img.width * fx, img.height * fy
    left, top = round(dx * ax), round(dy * ay)
    return img.crop((left, top, left + round(img.width - dx), top + round(img.height - dy)))


def _rotate_crop(img, degrees):
    """Rotate, then crop to the largest axis-aligned rectangle of the original aspect inside the rotated frame."""
    a = math.radians(abs(degrees))
    w, h = img.size
    # the scale s such that an s*w x s*h rectangle, centred, fits inside the rotated w x h frame
    s = min(w / (w * math.cos(a) + h * math.sin(a)), h / (w * math.sin(a) + h * math.cos(a)))
    rot = img.rotate(degrees, resample=Image.Resampling.BICUBIC)
    cw, ch = w * s, h * s
    return rot.crop((round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2)))


def _font(size: int):
    return ImageFont.load_default(size=max(8, size))


def _caption(img, rng, fw, fh):
    """An opaque box of ``fw`` x ``fh`` of the image, with text, in a random corner."""
    img = img.copy()
    w, h = img.size
    bw, bh = round(w * fw), round(h * fh)
    x = 0 if rng.random() < 0.5 else w - bw
    y = 0 if rng.random() < 0.5 else h - bh
    dark = rng.random() < 0.5
    box, ink = ((20, 20, 20), (240, 240, 240)) if dark else ((245, 245, 245), (15, 15, 15))
    draw = ImageDraw.Draw(img)
    draw.rectangle([x, y, x + bw - 1, y + bh - 1], fill=box)
    lines = max(1, min(3, round(bh / max(10, 0.045 * h))))
    size = max(8, int(bh / lines * 0.7))
    for k in range(lines):
        text = " ".join(rng.choice(_WORDS) for _ in range(4))
        draw.text((x + 4, y + 2 + k * bh / lines), text, fill=ink, font=_font(size))
    return img


def _watermark(img, rng):
    """Half-transparent white text with a dark outline, about 6 % of the height, in a random corner."""
    base = img.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, round(0.06 * img.height))
    text = rng.choice(("© example.com", "shutterpics", "@photographer", "stock images"))
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    margin = round(0.03 * img.width)
    x = margin if rng.random() < 0.5 else img.width - (right - left) - margin
    y = margin if rng.random() < 0.5 else img.height - (bottom - top) - margin
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 140), stroke_width=max(1, size // 12),
              stroke_fill=(0, 0, 0, 140))
    return Image.alpha_composite(base, layer).convert("RGB")


def _resize(img, f):
    return img.resize((max(8, round(img.width * f)), max(8, round(img.height * f))), Image.Resampling.LANCZOS)


# Each step maps (image, rng) -> image; a transform is a list of steps, then the final encode.
STEPS = {
    "resize_50": lambda im, r: _resize(im, 0.5),
    "resize_25": lambda im, r: _resize(im, 0.25),
    "grey": lambda im, r: ImageOps.grayscale(im).convert("RGB"),
    "contrast_130": lambda im, r: ImageEnhance.Contrast(im).enhance(1.3),
    "contrast_70": lambda im, r: ImageEnhance.Contrast(im).enhance(0.7),
    "bright_115": lambda im, r: ImageEnhance.Brightness(im).enhance(1.15),
    "crop_4": lambda im, r: _crop(im, 0.04, 0.04),
    "crop_8": lambda im, r: _crop(im, 0.08, 0.08),
    "crop_15": lambda im, r: _crop(im, 0.15, 0.15),
    "crop_8_corner": lambda im, r: _crop(im, 0.08, 0.08, 1.0, 1.0),
    "crop_15_corner": lambda im, r: _crop(im, 0.15, 0.15, 1.0, 1.0),
    "crop_8_wide": lambda im, r: _crop(im, 0.0, 0.15),  # letterbox-style: height only
    "hflip": lambda im, r: ImageOps.mirror(im),
    "rot_1": lambda im, r: im.rotate(1, resample=Image.Resampling.BICUBIC),
    "rot_3": lambda im, r: im.rotate(3, resample=Image.Resampling.BICUBIC),
    "rot_m3": lambda im, r: im.rotate(-3, resample=Image.Resampling.BICUBIC),
    "rot_5": lambda im, r: im.rotate(5, resample=Image.Resampling.BICUBIC),
    "rot_3_crop": lambda im, r: _rotate_crop(im, 3),
    "rot_3_expand": lambda im, r: im.rotate(3, resample=Image.Resampling.BICUBIC, expand=True),
    "crop_8_offset": lambda im, r: _crop(im, 0.08, 0.08, r.random(), r.random()),
    "caption_s": lambda im, r: _caption(im, r, 0.35, 0.10),
    "caption_l": lambda im, r: _caption(im, r, 0.55, 0.16),
    "watermark": lambda im, r: _watermark(im, r),
}
JPEG_STEPS = {"jpeg_q50": 50, "jpeg_q30": 30, "jpeg_q10": 10}

# The benchmark's transforms: single ones at several strengths, then combinations.
TRANSFORMS = [
    "resize_50", "resize_25", "jpeg_q50", "jpeg_q30", "jpeg_q10", "grey", "contrast_130", "contrast_70",
    "bright_115", "crop_4", "crop_8", "crop_15", "crop_8_corner", "crop_15_corner", "crop_8_wide", "hflip",
    "rot_1", "rot_3", "rot_m3", "rot_5", "rot_3_crop", "rot_3_expand", "crop_8_offset", "caption_s", "caption_l", "watermark",
    "hflip+crop_8", "crop_8+resize_50+jpeg_q30", "grey+caption_s", "rot_3+jpeg_q30",
    "hflip+caption_s+jpeg_q50", "crop_8+rot_3+resize_50", "contrast_130+watermark+resize_50",
    "hflip+crop_15+grey",
]


def apply(name: str, img: Image.Image, seed: int) -> bytes:
    """Encoded JPEG bytes of transform ``name`` (steps joined by ``+``) applied to ``img``."""
    rng = random.Random(f"{name}/{seed}")
    quality = 90
    for step in name.split("+"):
        if step in JPEG_STEPS:
            quality = JPEG_STEPS[step]
        else:
            img = STEPS[step](img, rng)
    return jpeg(img, quality)
