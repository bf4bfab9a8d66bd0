"""The dedupe stage: exact and near-duplicate clusters over a scrape (or any folder), one image kept per cluster.

Writes, each atomically, into ``out_dir``:

- ``hashes.parquet``: the hash cache (see :mod:`gencomp.data.hashing`), one row per sha256;
- ``clusters.parquet``: one row per input file (per manifest row when a manifest is given), see
  :data:`CLUSTER_COLUMNS`;
- ``contact_sheet.png``: the largest clusters, one per row, representative first, for a person to check;
- ``summary.json``: the counts returned by :func:`run_dedupe`.

Clusters are the connected components of "same sha256, or perceptual hashes within ``threshold`` bits".
The representative (``keep=True``) is the member with the most pixels, then the largest file, then the
smallest sha256, then the smallest path/url. ``cluster_key`` is the smallest sha256 among the members: it
names the cluster in later stages (the shard split is a hash of it) and stays the same across rescrapes
unless a new member with a smaller sha256 joins or two clusters merge. ``cluster`` is a dense integer in
``cluster_key`` order, convenient for a single run only.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image, ImageDraw

from gencomp.atomic import write_bytes_atomic, write_parquet_atomic
from gencomp.data.hashing import (
    STATUS_OK,
    as_uint64,
    read_hash_cache,
    sha256_file,
    update_hash_cache,
)
from gencomp.data.images import ImageRejected, open_image
from gencomp.data.neardup import choose_representatives, cluster_hashes, popcount64

# pHash at 8 bits (of 64), from benchmarks/dedupe_accuracy.py on the 548 photos of ../shared/data/photos:
# recall 1.000 for resize 50 %, JPEG q30-q90 and brightness +-10 %, 0.998 for crop 2 %, 0.923 for crop 5 %,
# 0 for a horizontal flip, with no false pair among the 149,878 pairs of distinct photos. At 10 the 5 % crop
# recall is 0.974 but the raw files hold a false pair (a tiger and a penguin, distance 10; 4 at 11, 8 at 12):
# at 10^4 images that rate would wrongly merge hundreds, and union-find chains such merges.
DEFAULT_THRESHOLD = 8
HASH_KINDS = ("phash", "dhash")

CLUSTER_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # relative to images_dir, POSIX separators
        ("sha256", pa.string()),
        ("cluster", pa.int64()),
        ("cluster_key", pa.string()),
        ("cluster_size", pa.int64()),  # files in the cluster
        ("keep", pa.bool_()),
        ("distance", pa.int64()),  # Hamming distance to the representative's hash; null when undecodable
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("bytes", pa.int64()),
        ("format", pa.string()),
        ("url", pa.string()),  # "" without a manifest
        ("status", pa.string()),  # ok | rejected
        ("reason", pa.string()),  # ImageRejected reason code (or read_error), "" when ok
        ("phash", pa.int64()),
        ("dhash", pa.int64()),
    ]
)
CLUSTER_COLUMNS = CLUSTER_SCHEMA.names

_THUMB = 128


def list_image_files(images_dir: Path, *, exclude: list[Path] = ()) -> list[Path]:
    """Every regular file under ``images_dir`` (recursively, sorted), except hidden ones and ``exclude`` trees.

    Files are not filtered by extension: what is not an image is recorded as rejected, not silently skipped.
    """
    excluded = [Path(e).resolve() for e in exclude]
    out = []
    for root, dirs, files in os.walk(images_dir):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (root_path / d).resolve() not in excluded
        )
        out.extend(root_path / f for f in sorted(files) if not f.startswith("."))
    return sorted(out)


def _files_from_manifest(images_dir: Path, manifest: Path) -> pd.DataFrame:
    table = pd.read_parquet(manifest)
    for col in ("path", "sha256"):
        if col not in table.columns:
            raise ValueError(f"manifest {manifest} has no column {col!r} (columns: {list(table.columns)})")
    if "status" in table.columns:
        table = table[table["status"] == "ok"]
    files = pd.DataFrame(
        {
            "path": table["path"].astype(str).str.replace("\\", "/", regex=False).to_numpy(),
            "sha256": table["sha256"].astype(str).to_numpy(),
            "url": table["url"].fillna("").astype(str).to_numpy() if "url" in table.columns else "",
        }
    )
    return files


def _files_from_folder(images_dir: Path, out_dir: Path, workers: int) -> pd.DataFrame:
    paths = list_image_files(images_dir, exclude=[out_dir])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # hashlib releases the GIL
        shas = list(pool.map(_sha256_or_empty, paths))
    rel = [p.relative_to(images_dir).as_posix() for p in paths]
    return pd.DataFrame({"path": rel, "sha256": shas, "url": [""] * len(rel)})


def _sha256_or_empty(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError:
        return ""  # unreadable: update_hash_cache records it as read_error


def run_dedupe(
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    manifest: str | Path | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    hash_kind: str = "phash",
    workers: int = 2,
    contact_sheet_clusters: int = 12,
) -> dict:
    """Hash (with the cache), cluster and choose one image per cluster. Returns the summary dict.

    ``manifest``: a scrape manifest (rows with ``status == "ok"``; ``path`` relative to ``images_dir``,
    ``sha256``, optional ``url``); without one every file under ``images_dir`` is considered.
    """
    images_dir = Path(images_dir)
    out_dir = Path(out_dir)
    if hash_kind not in HASH_KINDS:
        raise ValueError(f"hash_kind must be one of {HASH_KINDS}, not {hash_kind!r}")
    if not 0 <= threshold <= 64:
        raise ValueError(f"threshold must be in 0..64 bits, not {threshold}")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    if manifest is not None and not Path(manifest).is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)

    files = _files_from_manifest(images_dir, Path(manifest)) if manifest else _files_from_folder(
        images_dir, out_dir, workers
    )
    abs_paths = [images_dir / p for p in files["path"]]
    # A manifest row whose file is gone: hash_file reports it as read_error (not cached) instead of trusting
    # a cached hash for bytes that are no longer there.
    keys = [sha if sha and p.is_file() else f"missing:{p}" for p, sha in zip(abs_paths, files["sha256"])]

    cache_path = out_dir / "hashes.parquet"
    cached_before = set(read_hash_cache(cache_path)["sha256"])
    hashes = update_hash_cache(list(zip(abs_paths, keys)), cache_path, workers=workers)
    newly_hashed = len(set(hashes["sha256"]) - cached_before - {""})

    frame = pd.DataFrame(
        {
            "path": files["path"].to_numpy(),
            "sha256": [s if not s.startswith("missing:") else "" for s in hashes["sha256"]],
            "url": files["url"].to_numpy() if len(files) else [],
            "width": hashes["width"].to_numpy(),
            "height": hashes["height"].to_numpy(),
            "format": hashes["format"].to_numpy(),
            "status": hashes["status"].to_numpy(),
            "reason": hashes["reason"].fillna("").to_numpy(),
            "phash": hashes["phash"].to_numpy(),
            "dhash": hashes["dhash"].to_numpy(),
        }
    )
    frame["bytes"] = [p.stat().st_size if p.is_file() else 0 for p in abs_paths]
    clusters = _cluster(frame, threshold=threshold, hash_kind=hash_kind, workers=workers)

    table = pa.Table.from_pandas(clusters[CLUSTER_COLUMNS], schema=CLUSTER_SCHEMA, preserve_index=False)
    write_parquet_atomic(table.replace_schema_metadata(None), out_dir / "clusters.parquet", compression="zstd")
    write_bytes_atomic(
        out_dir / "contact_sheet.png",
        contact_sheet_png(clusters, images_dir, max_clusters=contact_sheet_clusters),
    )

    ok = clusters["status"] == STATUS_OK
    sizes = clusters[ok].groupby("cluster_key")["sha256"].nunique()
    summary = {
        "files": int(len(clusters)),
        "ok": int(ok.sum()),
        "rejected": int((~ok).sum()),
        "rejected_by_reason": {k: int(v) for k, v in clusters[~ok]["reason"].value_counts().sort_index().items()},
        "unique_sha256": int(clusters[ok]["sha256"].nunique()),
        "clusters": int(clusters[ok]["cluster_key"].nunique()),
        "near_duplicate_clusters": int((sizes >= 2).sum()),
        "kept": int(clusters["keep"].sum()),
        "removed": int((ok & ~clusters["keep"]).sum()),
        "newly_hashed": int(newly_hashed),
        "threshold": int(threshold),
        "hash_kind": hash_kind,
        "hashes": str(cache_path),
        "clusters_parquet": str(out_dir / "clusters.parquet"),
        "contact_sheet": str(out_dir / "contact_sheet.png"),
    }
    write_bytes_atomic(out_dir / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _cluster(frame: pd.DataFrame, *, threshold: int, hash_kind: str, workers: int) -> pd.DataFrame:
    """Add cluster, cluster_key, cluster_size, keep and distance to the per-file frame."""
    frame = frame.reset_index(drop=True)
    n = len(frame)
    ok = (frame["status"] == STATUS_OK).to_numpy()
    sha = frame["sha256"].astype(str).to_numpy()
    # What names a file in its cluster key: its sha256, or its path when it could not even be read.
    file_key = np.array([s if s else f"path:{p}" for s, p in zip(sha, frame["path"].astype(str))], dtype=object)

    # Near-duplicates among distinct sha256 values; copies of one file share its sha256 and so its label.
    label = np.full(n, -1, dtype=np.int64)
    ok_idx = np.nonzero(ok)[0]
    hash_u64 = np.zeros(n, dtype=np.uint64)
    hash_u64[ok_idx] = as_uint64(frame[hash_kind].to_numpy()[ok_idx].astype(np.int64))
    uniq_sha, first, inverse = np.unique(sha[ok_idx], return_index=True, return_inverse=True)
    label[ok_idx] = cluster_hashes(hash_u64[ok_idx][first], threshold, workers=workers)[inverse]
    # Undecodable files: one cluster per sha256 (per path when unreadable), never kept.
    bad_idx = np.nonzero(~ok)[0]
    if len(bad_idx):
        bad_inverse = np.unique(file_key[bad_idx].astype(str), return_inverse=True)[1]
        label[bad_idx] = len(uniq_sha) + bad_inverse

    pixels = (frame["width"].fillna(0).astype("int64") * frame["height"].fillna(0).astype("int64")).to_numpy()
    tiebreak = (frame["path"].astype(str) + "\0" + frame["url"].astype(str)).to_numpy()
    rep = choose_representatives(label, pixels, frame["bytes"].to_numpy(), sha, tiebreak=tiebreak)

    out = frame.copy()
    out["keep"] = ok & (rep == np.arange(n))
    distance = popcount64(hash_u64 ^ hash_u64[rep]).astype(np.int64)
    out["distance"] = pd.array([int(d) if good else None for d, good in zip(distance, ok)], dtype="Int64")
    by_label = pd.Series(file_key, dtype=object).groupby(label)
    out["cluster_key"] = by_label.transform("min").to_numpy()
    out["cluster_size"] = by_label.transform("size").to_numpy().astype(np.int64)
    out["cluster"] = out["cluster_key"].rank(method="dense").astype("int64") - 1
    return out.sort_values(
        ["cluster_key", "keep", "distance", "path", "url"],
        ascending=[True, False, True, True, True],
        kind="stable",
        na_position="last",
    ).reset_index(drop=True)


def _thumbnail(path: Path) -> Image.Image:
    try:
        img = open_image(path, draft_size=(_THUMB, _THUMB))
        img.thumbnail((_THUMB, _THUMB), Image.Resampling.LANCZOS)
        return img
    except (ImageRejected, OSError):
        return Image.new("RGB", (_THUMB, _THUMB), (128, 128, 128))


def contact_sheet_png(clusters: pd.DataFrame, images_dir: Path, *, max_clusters: int = 12, per_row: int = 8) -> bytes:
    """PNG bytes: the ``max_clusters`` largest clusters (2+ distinct images), one row each, representative first.

    Each thumbnail is captioned with its Hamming distance to the representative ("keep" for the
    representative) and the number of copies when the same file appears several times.
    """
    ok = clusters[clusters["status"] == STATUS_OK]
    distinct = ok.drop_duplicates("sha256")
    sizes = distinct.groupby("cluster_key").size()
    sizes = sizes[sizes >= 2]
    order = sorted(sizes.index, key=lambda k: (-int(sizes[k]), k))[:max_clusters]
    copies = ok.groupby("sha256").size()

    cell_w, cell_h, header = _THUMB + 8, _THUMB + 22, 20
    width = cell_w * per_row + 8
    if not order:
        sheet = Image.new("RGB", (width, 40), (255, 255, 255))
        ImageDraw.Draw(sheet).text((8, 12), "no near-duplicate clusters", fill=(0, 0, 0))
    else:
        sheet = Image.new("RGB", (width, len(order) * (cell_h + header) + 8), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for row, key in enumerate(order):
            y0 = row * (cell_h + header) + 4
            members = distinct[distinct["cluster_key"] == key].sort_values(
                ["keep", "distance", "sha256"], ascending=[False, True, True])
            draw.text((6, y0 + 4), f"cluster {key[:12]}  {int(sizes[key])} distinct images", fill=(0, 0, 0))
            for col, member in enumerate(members.head(per_row).itertuples(index=False)):
                x = 4 + col * cell_w
                y = y0 + header
                thumb = _thumbnail(images_dir / member.path)
                colour = (0, 160, 0) if member.keep else (200, 0, 0)
                draw.rectangle([x, y, x + _THUMB + 3, y + _THUMB + 3], outline=colour, width=2)
                sheet.paste(thumb, (x + 2 + (_THUMB - thumb.width) // 2, y + 2 + (_THUMB - thumb.height) // 2))
                n_copies = int(copies.get(member.sha256, 1))
                caption = "keep" if member.keep else f"d={int(member.distance)}"
                if n_copies > 1:
                    caption += f" x{n_copies}"
                draw.text((x + 2, y + _THUMB + 6), caption, fill=colour)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
