"""The dedupe stage: exact and near-duplicate clusters over a scrape (or any folder), one image kept per cluster.

Writes, each atomically, into ``out_dir``:

- ``hashes.parquet``: the hash cache (see :mod:`gencomp.data.hashing`), one row per sha256;
- ``clusters.parquet``: one row per input file (per manifest row when a manifest is given), see
  :data:`CLUSTER_COLUMNS`;
- ``pairs.parquet``: every candidate pair that was verified, with its score (the audit trail of the
  threshold, and the cache that lets a rescrape verify only pairs with a new image);
- ``contact_sheet.png``: the largest clusters, one per row, representative first, then the borderline
  pairs (verification scores nearest the threshold, joined and not), for a person to check;
- ``summary.json``: the counts returned by :func:`run_dedupe`.

``method="verified"`` (the default): candidates are pairs of images with a candidate hash (see
:mod:`gencomp.data.hashing`: whole image, centred 92 % and 60 % boxes, each in canonical orientation so that
mirror images match) within ``threshold`` bits, found by one multi-index search over all kinds; each
candidate edge must then pass :func:`gencomp.data.verify.verify_pairs` (score >= ``verify_threshold``)
before union-find joins it, and after clustering every member of a cluster of three or more must also
score at least ``guard_threshold`` against the representative, or it is split off: a chain of
individually plausible edges cannot join two different images. ``method="hash"`` is the earlier
behaviour: clusters of "pHash (or dHash) within ``threshold`` bits", unverified.

Clusters are the connected components of "same sha256, or a near-duplicate edge".
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
    CANDIDATE_KINDS,
    HASHER_ID,
    STATUS_OK,
    THUMB_METHOD,
    THUMB_SIDE,
    as_uint64,
    read_hash_cache,
    sha256_file,
    update_hash_cache,
)
from gencomp.data.images import ImageRejected, open_image
from gencomp.data.neardup import (
    choose_representatives,
    cluster_hashes,
    cluster_verified,
    connected_components,
    cross_owner_edges,
    popcount64,
)
from gencomp.config import DedupeParams
from gencomp.data.verify import verify_pairs

# The defaults are the settings schema's (gencomp.config.DedupeParams): a candidate search at 8 bits (of 64)
# over the canonical full/c92/c60 hashes, then verification; BENCHMARKS.md ("Near-duplicates as the web makes
# them") has the measurements behind the numbers and the rule that chose verify_threshold.
_SETTINGS = DedupeParams()
DEFAULT_THRESHOLD = _SETTINGS.threshold
DEFAULT_VERIFY_THRESHOLD = _SETTINGS.verify_threshold
DEFAULT_GUARD_THRESHOLD = _SETTINGS.guard_threshold
HASH_KINDS = ("phash", "dhash")
METHODS = ("verified", "hash")
# Scores in pairs.parquet are reused only under the same id: the verifier and the thumbnails it compares
# (a new hasher that makes thumbnails another way makes every cached score stale).
VERIFIER_ID = f"verify-3/box13x13/turn3/lk-affine6/cover20/small-blur/{THUMB_METHOD}"

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
        # Why this file is in its cluster: the edge that joined it (its first accepted edge).
        ("joined_to", pa.string()),  # sha256 of the other image of that edge; "" when none
        ("join_hashes", pa.string()),  # the hash kinds that matched, e.g. "full~c92" (verified), "phash" (hash)
        ("join_distance", pa.int64()),  # their Hamming distance
        ("join_score", pa.float64()),  # the verification score of the edge (null with method="hash")
        ("join_mirror", pa.bool_()),  # the two are left-right mirror images of each other
        ("rep_score", pa.float64()),  # verification score against the representative (the chain guard)
    ]
)
CLUSTER_COLUMNS = CLUSTER_SCHEMA.names

PAIR_SCHEMA = pa.schema(
    [
        ("sha256_a", pa.string()),
        ("sha256_b", pa.string()),
        ("mirror", pa.bool_()),
        ("hashes", pa.string()),
        ("distance", pa.int64()),
        ("score", pa.float64()),
        ("joined", pa.bool_()),  # accepted (score >= verify_threshold) when this run saw it
        ("verifier", pa.string()),
    ]
)

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
    method: str = "verified",
    verify_threshold: float = DEFAULT_VERIFY_THRESHOLD,
    guard_threshold: float = DEFAULT_GUARD_THRESHOLD,
    workers: int = 2,
    contact_sheet_clusters: int = 12,
    contact_sheet_pairs: int = 8,
) -> dict:
    """Hash (with the cache), cluster and choose one image per cluster. Returns the summary dict.

    ``manifest``: a scrape manifest (rows with ``status == "ok"``; ``path`` relative to ``images_dir``,
    ``sha256``, optional ``url``); without one every file under ``images_dir`` is considered.
    ``threshold``: Hamming bits of the candidate search (``method="verified"``) or of the clusters themselves
    (``method="hash"``, with ``hash_kind``). ``verify_threshold``/``guard_threshold``: see the module docstring.
    """
    images_dir = Path(images_dir)
    out_dir = Path(out_dir)
    if hash_kind not in HASH_KINDS:
        raise ValueError(f"hash_kind must be one of {HASH_KINDS}, not {hash_kind!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
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
    cached = read_hash_cache(cache_path)
    cached_before = set(cached["sha256"][cached["hasher"] == HASHER_ID])  # another hasher's rows are redone
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
    pairs_path = out_dir / "pairs.parquet"
    if method == "verified":
        features = hashes.drop(columns=["path"]).reset_index(drop=True)
        clusters, pairs = _cluster_verified(frame, features, threshold=threshold,
                                            verify_threshold=verify_threshold, guard_threshold=guard_threshold,
                                            workers=workers, pairs_path=pairs_path)
        write_parquet_atomic(pa.Table.from_pandas(pairs, schema=PAIR_SCHEMA, preserve_index=False)
                             .replace_schema_metadata(None), pairs_path, compression="zstd")
    else:
        clusters = _cluster(frame, threshold=threshold, hash_kind=hash_kind, workers=workers)
        pairs = pd.DataFrame(columns=PAIR_SCHEMA.names)

    table = pa.Table.from_pandas(clusters[CLUSTER_COLUMNS], schema=CLUSTER_SCHEMA, preserve_index=False)
    write_parquet_atomic(table.replace_schema_metadata(None), out_dir / "clusters.parquet", compression="zstd")
    write_bytes_atomic(
        out_dir / "contact_sheet.png",
        contact_sheet_png(clusters, images_dir, max_clusters=contact_sheet_clusters,
                          pairs=pairs, verify_threshold=verify_threshold, max_pairs=contact_sheet_pairs),
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
        "method": method,
        "verify_threshold": float(verify_threshold) if method == "verified" else None,
        "guard_threshold": float(guard_threshold) if method == "verified" else None,
        "verified_pairs": int(len(pairs)),
        "newly_verified_pairs": int(pairs.attrs.get("newly_verified", 0)),
        "split_by_guard": int(clusters.attrs.get("split_by_guard", 0)),
        "hashes": str(cache_path),
        "clusters_parquet": str(out_dir / "clusters.parquet"),
        "contact_sheet": str(out_dir / "contact_sheet.png"),
        "pairs_parquet": str(pairs_path) if method == "verified" else None,
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
    _set_cluster_ids(out, label, file_key)
    in_group = ok & (out["cluster_size"].to_numpy() > 1) & ~out["keep"].to_numpy()
    out["joined_to"] = np.where(in_group, sha[rep], "")
    out["join_hashes"] = np.where(in_group, hash_kind, "")
    out["join_distance"] = out["distance"].where(in_group)
    out["join_score"] = np.nan
    out["join_mirror"] = pd.array([False if g else None for g in in_group], dtype="boolean")
    out["rep_score"] = np.nan
    return _sorted_clusters(out)


def _sorted_clusters(out: pd.DataFrame) -> pd.DataFrame:
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


def contact_sheet_png(clusters: pd.DataFrame, images_dir: Path, *, max_clusters: int = 12, per_row: int = 8,
                      pairs: pd.DataFrame | None = None, verify_threshold: float = DEFAULT_VERIFY_THRESHOLD,
                      max_pairs: int = 8) -> bytes:
    """PNG bytes: the ``max_clusters`` largest clusters (2+ distinct images), one row each, representative first,
    then the ``max_pairs`` borderline pairs of ``pairs`` (verification scores nearest ``verify_threshold``).

    Each cluster thumbnail is captioned with its verification score of the edge that joined it (or its
    Hamming distance to the representative without one; "keep" for the representative) and the number of
    copies when the same file appears several times. Each borderline pair says joined or not, its score,
    the hash kinds that matched and their distance, so that a threshold can be audited by eye.
    """
    ok = clusters[clusters["status"] == STATUS_OK]
    distinct = ok.drop_duplicates("sha256")
    sizes = distinct.groupby("cluster_key").size()
    sizes = sizes[sizes >= 2]
    order = sorted(sizes.index, key=lambda k: (-int(sizes[k]), k))[:max_clusters]
    copies = ok.groupby("sha256").size()

    cell_w, cell_h, header = _THUMB + 8, _THUMB + 22, 20
    width = cell_w * per_row + 8
    border = _borderline(pairs, verify_threshold, max_pairs)
    path_of = dict(zip(ok["sha256"], ok["path"]))
    pairs_h = (header + (len(border) + 1) // 2 * (cell_h + 6) + 8) if len(border) else 0
    if not order:
        sheet = Image.new("RGB", (width, 40 + pairs_h), (255, 255, 255))
        ImageDraw.Draw(sheet).text((8, 12), "no near-duplicate clusters", fill=(0, 0, 0))
        _draw_pairs(sheet, border, images_dir, path_of, 40, verify_threshold)
    else:
        rows_h = len(order) * (cell_h + header) + 8
        sheet = Image.new("RGB", (width, rows_h + pairs_h), (255, 255, 255))
        _draw_pairs(sheet, border, images_dir, path_of, rows_h, verify_threshold)
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
                score = getattr(member, "join_score", np.nan)
                if member.keep:
                    caption = "keep"
                elif score is not None and not pd.isna(score):
                    caption = f"s={float(score):.2f} {getattr(member, 'join_hashes', '')}"
                else:
                    caption = f"d={int(member.distance)}"
                if n_copies > 1:
                    caption += f" x{n_copies}"
                draw.text((x + 2, y + _THUMB + 6), caption, fill=colour)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _borderline(pairs: pd.DataFrame | None, threshold: float, count: int) -> pd.DataFrame:
    """The ``count`` verified pairs nearest the threshold, half joined and half not where there are both."""
    if pairs is None or len(pairs) == 0 or count <= 0:
        return pd.DataFrame(columns=PAIR_SCHEMA.names)
    gap = (pairs["score"] - threshold).abs()
    ranked = pairs.assign(_gap=gap).sort_values(["_gap", "sha256_a", "sha256_b"], kind="stable")
    above = ranked[ranked["score"] >= threshold].head((count + 1) // 2)
    below = ranked[ranked["score"] < threshold].head(count - len(above))
    return pd.concat([above, below]).sort_values("score", ascending=False, kind="stable").drop(columns="_gap")


def _draw_pairs(sheet: Image.Image, border: pd.DataFrame, images_dir: Path, path_of: dict, y0: int,
                threshold: float) -> None:
    if len(border) == 0:
        return
    draw = ImageDraw.Draw(sheet)
    cell_w, cell_h = _THUMB + 8, _THUMB + 22
    draw.text((6, y0 + 4), f"borderline pairs (verification threshold {threshold:.2f})", fill=(0, 0, 0))
    for k, pair in enumerate(border.itertuples(index=False)):
        col, row = k % 2, k // 2
        x = 4 + col * (4 * cell_w)
        y = y0 + 20 + row * (cell_h + 6)
        colour = (0, 140, 0) if pair.score >= threshold else (200, 0, 0)
        for t, sha in enumerate((pair.sha256_a, pair.sha256_b)):
            thumb = _thumbnail(images_dir / path_of[sha]) if sha in path_of else _thumbnail(Path("/nonexistent"))
            sheet.paste(thumb, (x + t * cell_w + (_THUMB - thumb.width) // 2, y + (_THUMB - thumb.height) // 2))
        verdict = "joined" if pair.score >= threshold else "not joined"
        draw.text((x + 2 * cell_w + 4, y + 10), f"{verdict}\nscore {pair.score:.3f}\n{pair.hashes} d={pair.distance}"
                  + ("\nmirror" if pair.mirror else ""), fill=colour)


def _read_pairs_cache(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        old = pd.read_parquet(path)
    except (OSError, ValueError):
        return {}
    if not set(PAIR_SCHEMA.names) <= set(old.columns):
        return {}
    old = old[old["verifier"] == VERIFIER_ID]
    return {(a, b, bool(m)): float(s) for a, b, m, s in zip(old["sha256_a"], old["sha256_b"], old["mirror"], old["score"])}


def candidate_edges(features: pd.DataFrame, threshold: int, *, workers: int = 1):
    """The candidate search of ``method="verified"`` over the rows of ``features`` (hash-cache columns, one
    row per distinct image): every pair with some pair of candidate hashes within ``threshold`` bits.

    The index holds each kind's canonical hash, plus its other orientation when that is ambiguous. Returns
    ``(a, b, distance, mirror, how)``: row positions, the smallest distance, whether B is A's mirror image,
    and which kinds matched (``"c92~full"``)."""
    u = len(features)
    hs, owner, kind_of, mirrored = [], [], [], []
    for k, name in enumerate(CANDIDATE_KINDS):
        h = as_uint64(features[name].to_numpy().astype(np.int64))
        alt = as_uint64(features[f"{name}_alt"].to_numpy().astype(np.int64))
        m = features[f"{name}_mirrored"].to_numpy().astype(bool)
        two = alt != h
        hs += [h, alt[two]]
        owner += [np.arange(u), np.nonzero(two)[0]]
        kind_of += [np.full(u, k), np.full(int(two.sum()), k)]
        mirrored += [m, ~m[two]]
    hs, owner = np.concatenate(hs), np.concatenate(owner)
    kind_of, mirrored = np.concatenate(kind_of), np.concatenate(mirrored)
    a, b, dist, ea, eb = cross_owner_edges(hs, owner, threshold, workers=workers)
    names = np.array(list(CANDIDATE_KINDS), dtype=object)
    how = np.array([f"{x}~{y}" for x, y in zip(names[kind_of[ea]], names[kind_of[eb]])], dtype=object)
    return a, b, dist, mirrored[ea] ^ mirrored[eb], how


def _cluster_verified(frame: pd.DataFrame, features: pd.DataFrame, *, threshold: int, verify_threshold: float,
                      guard_threshold: float, workers: int, pairs_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``method="verified"`` clusters (see the module docstring) and the table of verified pairs."""
    frame = frame.reset_index(drop=True)
    n = len(frame)
    ok = (frame["status"] == STATUS_OK).to_numpy()
    sha = frame["sha256"].astype(str).to_numpy()
    file_key = np.array([s if s else f"path:{p}" for s, p in zip(sha, frame["path"].astype(str))], dtype=object)
    ok_idx = np.nonzero(ok)[0]
    uniq_sha, first, inverse = np.unique(sha[ok_idx], return_index=True, return_inverse=True)
    rows = ok_idx[first]  # one file row per distinct image
    u = len(rows)

    a, b, dist, mirror, how = candidate_edges(features.iloc[rows], threshold, workers=workers)

    thumbs = features["thumb"].to_numpy()[rows]
    aspect = (features["width"].astype("float64") / features["height"].astype("float64")).to_numpy()[rows]
    short = np.minimum(features["width"].astype("float64"), features["height"].astype("float64")).to_numpy()[rows]
    cache = _read_pairs_cache(pairs_path)
    edge_score = np.full(len(a), np.nan)
    fresh = [0]

    def score_edges(ia, ib, mir) -> np.ndarray:
        """Scores of image pairs (ia, ib) with mirror flags (None: unknown, both tried), through the cache."""
        keys = [(uniq_sha[x], uniq_sha[y], bool(m) if m is not None else None) for x, y, m in zip(ia, ib, mir)]
        out = np.array([cache.get(k, np.nan) if k[2] is not None else np.nan for k in keys], dtype=np.float64)
        todo = np.nonzero(np.isnan(out))[0]
        if len(todo):
            known = np.array([mir[t] is not None for t in todo], dtype=bool)
            for sel, flags in ((todo[known], np.array([bool(mir[t]) for t in todo[known]], dtype=bool)),
                               (todo[~known], None)):
                if len(sel) == 0:
                    continue
                sc, _ = verify_pairs(_stack(thumbs[ia[sel]]), _stack(thumbs[ib[sel]]), flags,
                                     aspect_a=aspect[ia[sel]], aspect_b=aspect[ib[sel]],
                                     short_side=np.minimum(short[ia[sel]], short[ib[sel]]))
                out[sel] = sc
            fresh[0] += len(todo)
        return out

    def verify(idx: np.ndarray):
        if verify_threshold <= -1.0:  # every candidate joins: the unverified search, for comparison
            return np.ones(len(idx), dtype=bool), np.full(len(idx), np.nan)
        sc = score_edges(a[idx], b[idx], mirror[idx].tolist())
        edge_score[idx] = sc
        return sc >= verify_threshold, sc

    labels_u, tree, was_verified, _ = cluster_verified(u, a, b, dist, verify)

    # The chain guard: in clusters of 3+ distinct images every member must also match the representative.
    pixels_u = (features["width"].fillna(0).astype("int64") * features["height"].fillna(0).astype("int64")).to_numpy()[rows]
    bytes_u = frame["bytes"].to_numpy()[rows]
    rep_u = choose_representatives(labels_u, pixels_u, bytes_u, uniq_sha)
    sizes = np.bincount(labels_u, minlength=u)
    rep_score = np.full(u, np.nan)
    check = np.nonzero((sizes[labels_u] >= 3) & (rep_u != np.arange(u)))[0] if guard_threshold > -1.0 else []
    split = 0
    if len(check):
        rep_score[check] = score_edges(rep_u[check], check, [None] * len(check))
        bad = check[rep_score[check] < guard_threshold]
        split = len(bad)
        if split:
            # Re-cluster without the edges that touch a split-off member: it becomes its own cluster unless
            # it has accepted edges among the other split-off members.
            accepted = was_verified & ((edge_score >= verify_threshold) | (verify_threshold <= -1.0))
            bad_mask = np.zeros(u, dtype=bool)
            bad_mask[bad] = True
            keep_edge = accepted & (bad_mask[a] == bad_mask[b])
            labels_u = connected_components(u, a[keep_edge], b[keep_edge])
            tree = np.where(bad_mask & ~np.isin(tree, np.nonzero(keep_edge)[0]), -1, tree)
            rep_u = choose_representatives(labels_u, pixels_u, bytes_u, uniq_sha)

    # Back to one row per file (copies of one file share its sha256, hence its cluster).
    label = np.full(n, -1, dtype=np.int64)
    label[ok_idx] = labels_u[inverse]
    bad_idx = np.nonzero(~ok)[0]
    if len(bad_idx):
        label[bad_idx] = u + np.unique(file_key[bad_idx].astype(str), return_inverse=True)[1]
    pixels = (frame["width"].fillna(0).astype("int64") * frame["height"].fillna(0).astype("int64")).to_numpy()
    tiebreak = (frame["path"].astype(str) + "\0" + frame["url"].astype(str)).to_numpy()
    rep = choose_representatives(label, pixels, frame["bytes"].to_numpy(), sha, tiebreak=tiebreak)

    out = frame.copy()
    out["keep"] = ok & (rep == np.arange(n))
    ph = np.zeros(n, dtype=np.uint64)
    ph[ok_idx] = as_uint64(frame["phash"].to_numpy()[ok_idx].astype(np.int64))
    d_rep = popcount64(ph ^ ph[rep]).astype(np.int64)
    out["distance"] = pd.array([int(x) if g else None for x, g in zip(d_rep, ok)], dtype="Int64")
    _set_cluster_ids(out, label, file_key)

    e_of_row = np.full(n, -1, dtype=np.int64)
    e_of_row[ok_idx] = tree[inverse]
    u_of_row = np.full(n, -1, dtype=np.int64)
    u_of_row[ok_idx] = inverse
    has = e_of_row >= 0
    e = np.where(has, e_of_row, 0)
    other = np.where(a[e] == u_of_row, b[e], a[e]) if len(a) else np.zeros(n, dtype=np.int64)
    out["joined_to"] = np.where(has, uniq_sha[other] if len(a) else "", "")
    out["join_hashes"] = np.where(has, how[e] if len(a) else "", "")
    out["join_distance"] = pd.array([int(dist[x]) if h else None for x, h in zip(e, has)], dtype="Int64")
    out["join_score"] = np.where(has, edge_score[e] if len(a) else np.nan, np.nan)
    out["join_mirror"] = pd.array([bool(mirror[x]) if h else None for x, h in zip(e, has)], dtype="boolean")
    rs = np.full(n, np.nan)
    rs[ok_idx] = rep_score[inverse]
    out["rep_score"] = rs
    out = _sorted_clusters(out)
    out.attrs["split_by_guard"] = split

    done = np.nonzero(was_verified)[0]
    pairs = pd.DataFrame({
        "sha256_a": uniq_sha[a[done]] if len(done) else [],
        "sha256_b": uniq_sha[b[done]] if len(done) else [],
        "mirror": mirror[done],
        "hashes": how[done] if len(done) else [],
        "distance": dist[done],
        "score": edge_score[done],
        "joined": edge_score[done] >= verify_threshold,
        "verifier": VERIFIER_ID,
    })
    pairs.attrs["newly_verified"] = fresh[0]
    return out, pairs


def _stack(values) -> np.ndarray:
    return np.stack([np.frombuffer(v, dtype=np.uint8).reshape(THUMB_SIDE, THUMB_SIDE) for v in values])


def _set_cluster_ids(out: pd.DataFrame, label: np.ndarray, file_key: np.ndarray) -> None:
    """A cluster's key is its smallest file key, so ids do not depend on the order the files came in;
    ``cluster`` numbers the keys densely, ``cluster_size`` counts the members."""
    by_label = pd.Series(file_key, dtype=object).groupby(label)
    out["cluster_key"] = by_label.transform("min").to_numpy()
    out["cluster_size"] = by_label.transform("size").to_numpy().astype(np.int64)
    out["cluster"] = out["cluster_key"].rank(method="dense").astype("int64") - 1
