"""Narrow image domains read from a local folder, brought to the domain's own size and sharded by group.

The poster inverts a GAN "pretrained on the same domain" as the image, and concludes that the VAE-GAN carries
across domains where the GAN does not. Testing that needs domains (faces, aerial scenes, textures, ...) besides
the scraped photo corpus. A domain is a folder of images plus three choices, all settings (``DomainSpec``):

- **its size**: every image is cut and resized once, when it is sharded, to what the domain's models see and are
  evaluated at: an explicit crop box (the CelebA-128 protocol crops the aligned 178x218 face to (0, 20, 178,
  198) and resizes it to 128x128), or a centred square crop (``center_crop``: its side in pixels, 0 for the
  largest square), then an optional resize to ``size`` x ``size`` (Lanczos); or, for a corpus of photos of
  every shape, only a cap on the short side (``max_short_side``), as training sets are stored. A domain GAN then works on whole
  images, one tile each, as the poster's did;
- **its grouping**: images of one group always land in the same split. For faces the group is the person (the
  parent folder of each file's original path in the folder's ``MANIFEST.tsv``: ``celeb_123/006378.jpg``), so no
  identity is both trained on and tested on; ``group_by: file`` makes every image its own group;
- **its terms of use**, carried into the shard manifest and from there into every model trained on it.

The output is an ordinary shard set (:mod:`gencomp.data.shards`: same schema, manifest, loader, evaluation
datasets), whose manifest adds a ``domain`` record: the spec, the source folder's content hash (the sorted
sha256 of its files), the images taken and those refused with their reason. The images are stored as JPEG at
``quality`` (the sources are JPEGs already; the stored image is the reference every reconstruction is compared
with). The split of a group is the shard rule's: a hash of (salt, group), so it never depends on which other
images are present.

Writing is all or nothing: the shards and manifest are built in a temporary folder beside ``out_dir`` and moved
into place in one rename. An existing ``out_dir`` built from the same spec and the same source content is left
as it is; one built otherwise is refused (delete it, or choose another folder), so a changed setting never
mixes two preparations in one set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from gencomp.data.images import TOO_SMALL, ImageRejected, open_image
from gencomp.data.shards import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ShardError,
    _check_fractions,
    _write_manifest,
    _write_one_shard,
    assign_split,
    read_manifest,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
GROUP_MODES = ("parent", "file")
MANIFEST_TSV = "MANIFEST.tsv"
SHARD_ROWS = 2000  # images per shard file: the domains are small, a few shards each


class DomainError(ValueError):
    """A domain folder or setting that cannot be prepared; the message names the domain and what is wrong."""


@dataclass(frozen=True)
class DomainSpec:
    """One domain: where its images are and how they are cut, grouped and split (see the module doc)."""

    name: str
    folder: str
    crop_box: tuple[int, int, int, int] | None = None
    center_crop: int | None = None
    size: int | None = None
    max_short_side: int | None = None
    group_by: str = "file"
    quality: int = 90
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    salt: str = "gencomp"
    terms: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise DomainError(f"domain name {self.name!r} must be letters, digits, '-' or '_'")
        if self.crop_box is not None:
            box = tuple(self.crop_box)
            if len(box) != 4 or not all(isinstance(v, int) for v in box) or box[0] >= box[2] or box[1] >= box[3] \
                    or min(box) < 0:
                raise DomainError(f"domain {self.name}: crop_box must be [left, top, right, bottom] pixels with "
                                  f"left < right and top < bottom, got {self.crop_box!r}")
            object.__setattr__(self, "crop_box", box)
        if self.crop_box is not None and self.center_crop is not None:
            raise DomainError(f"domain {self.name}: give crop_box or center_crop, not both")
        if self.center_crop is not None and self.center_crop < 0:
            raise DomainError(f"domain {self.name}: center_crop must be >= 0 (0: the largest square)")
        if self.size is not None and not 8 <= self.size <= 4096:
            raise DomainError(f"domain {self.name}: size must be in 8..4096, got {self.size}")
        if self.max_short_side is not None and (self.size is not None or self.max_short_side < 16):
            raise DomainError(f"domain {self.name}: max_short_side must be >= 16 and cannot go with size")
        if self.group_by not in GROUP_MODES:
            raise DomainError(f"domain {self.name}: group_by must be one of {GROUP_MODES}, got {self.group_by!r}")
        if not 1 <= self.quality <= 100:
            raise DomainError(f"domain {self.name}: quality must be in 1..100, got {self.quality}")
        try:
            object.__setattr__(self, "split", _check_fractions(dict(self.split)))
        except ValueError as exc:
            raise DomainError(f"domain {self.name}: {exc}") from None

    def record(self) -> dict:
        """The spec as JSON-ready data (what the manifest stores and compares). The folder is left out: where the
        images are does not change what they are, which the source hash records."""
        out = asdict(self)
        del out["folder"]
        out["crop_box"] = list(self.crop_box) if self.crop_box is not None else None
        return out


def prepare(img: Image.Image, spec: DomainSpec) -> Image.Image:
    """``img`` (RGB) cut and resized as ``spec`` says. Raises ImageRejected when the image is too small for it."""
    w, h = img.size
    if spec.crop_box is not None:
        left, top, right, bottom = spec.crop_box
        if right > w or bottom > h:
            raise ImageRejected(TOO_SMALL, f"image is {w}x{h}, smaller than the crop box {list(spec.crop_box)}")
        img = img.crop(spec.crop_box)
    elif spec.center_crop is not None:
        side = min(w, h) if spec.center_crop == 0 else spec.center_crop
        if side > min(w, h):
            raise ImageRejected(TOO_SMALL, f"image is {w}x{h}, smaller than the centre crop {side}")
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if spec.size is not None:
        if img.width != img.height:
            raise DomainError(f"domain {spec.name}: size needs a square image; add crop_box or center_crop")
        if img.size != (spec.size, spec.size):
            img = img.resize((spec.size, spec.size), Image.Resampling.LANCZOS)
    elif spec.max_short_side is not None and min(img.size) > spec.max_short_side:
        scale = spec.max_short_side / min(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    return img


def _listed_groups(folder: Path) -> dict[str, str]:
    """file name -> group, from MANIFEST.tsv's original paths (their parent folder), when the folder has one."""
    path = folder / MANIFEST_TSV
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and not {"file", "path_in_repo"} <= set(rows[0]):
        raise DomainError(f"{path}: needs the columns 'file' and 'path_in_repo'")
    return {r["file"]: str(Path(r["path_in_repo"]).parent) for r in rows}


def source_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (recursively), sorted by relative path; hidden files skipped."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def build_domain_shards(spec: DomainSpec, out_dir: str | Path, *, folder: str | Path | None = None) -> dict:
    """Prepare every image of the domain and write them as a shard set at ``out_dir``; return its manifest.

    ``folder`` overrides ``spec.folder`` (relative paths in settings are resolved by the caller). Returns the
    manifest plus ``up_to_date`` (True when ``out_dir`` already held exactly this preparation).
    """
    source = Path(folder if folder is not None else spec.folder)
    out_dir = Path(out_dir)
    if not source.is_dir():
        raise DomainError(f"domain {spec.name}: folder {source} does not exist (set domains.{spec.name}.folder)")
    files = source_files(source)
    if not files:
        raise DomainError(f"domain {spec.name}: no images in {source}")
    groups = _listed_groups(source) if spec.group_by == "parent" else {}

    digests, rows, refused = [], [], []
    for path in files:
        rel = path.relative_to(source).as_posix()
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        digests.append(f"{rel}\t{sha}")
        if spec.group_by == "parent":
            group = groups.get(path.name) or (str(Path(rel).parent) if Path(rel).parent != Path(".") else None)
            if group is None:
                refused.append({"file": rel, "reason": "no_group",
                                "detail": f"not in {MANIFEST_TSV} and not in a subfolder"})
                continue
        else:
            group = rel
        try:
            img = prepare(open_image(data), spec)
        except ImageRejected as exc:
            refused.append({"file": rel, "reason": exc.reason, "detail": exc.message})
            continue
        stored = _encode_jpeg(img, spec.quality)
        rows.append({"image": stored, "sha256": sha, "width": img.width, "height": img.height, "format": "JPEG",
                     "url": rel, "cluster_key": sha, "group": group})
    source_hash = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    record = {"spec": spec.record(), "source_sha256": source_hash, "images": len(rows), "refused": refused}

    if (out_dir / MANIFEST_NAME).is_file():
        have = read_manifest(out_dir).get("domain") or {}
        if have.get("spec") == record["spec"] and have.get("source_sha256") == source_hash:
            manifest = read_manifest(out_dir)
            manifest["up_to_date"] = True
            return manifest
        raise ShardError(f"{out_dir} holds another preparation (another domain spec or other source files); "
                         "delete it or choose another folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ShardError(f"{out_dir} exists and is not a domain shard set; choose an empty or new folder")
    if not rows:
        raise DomainError(f"domain {spec.name}: every image was refused ({refused[0]['detail']}, ...)")

    frame = pd.DataFrame(rows)
    frame["split"] = [assign_split(g, spec.split, spec.salt) for g in frame["group"]]
    order = {name: k for k, name in enumerate(spec.split)}
    frame = frame.assign(_o=frame["split"].map(order)).sort_values(["_o", "sha256"], kind="stable")
    frame = frame.drop(columns=["_o", "group"]).reset_index(drop=True)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        manifest = {"version": MANIFEST_VERSION, "salt": spec.salt, "split_fractions": spec.split, "shards": [],
                    "domain": record}
        for k, start in enumerate(range(0, len(frame), SHARD_ROWS)):
            name = f"part-{k:05d}.parquet"
            manifest["shards"].append(_write_one_shard(staging, name, frame.iloc[start:start + SHARD_ROWS], 100))
        _write_manifest(staging, manifest)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); a non-empty one would make the rename fail, not vanish
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest = read_manifest(out_dir)
    manifest["up_to_date"] = False
    return manifest
