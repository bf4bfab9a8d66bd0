"""Parquet shards of the kept images (original encoded bytes) with a deterministic, cluster-aware split.

Layout of ``out_dir``::

    part-00000.parquet, part-00001.parquet, ...   columns of SHARD_SCHEMA; row groups never mix splits
    _manifest.json                                 shards (rows, bytes, sha256, split counts, row groups)

Split: a cluster's point ``u = sha256(salt \\0 cluster_key) / 2**64`` in [0, 1) falls in one interval of
``split_fractions`` (taken in the given order). All near-duplicates of a cluster share its key and so its split.

Appending: a rerun writes new shards holding only images whose sha256 and cluster_key are in no existing shard,
so a rescrape appends and an image once sharded never moves. Existing shards are never rewritten, and the
salt and fractions of an existing shard set cannot be changed (that would move images): use a new ``out_dir``.

Resizing (``resize``, off by default): every image is stored upright, downsized (Lanczos) so its short side is
at most ``max_short_side``, and re-encoded as JPEG at ``quality``, as img2dataset does for training sets.
Training reads every image many times, and decoding a 12 MP original for a 64 px crop is what bounds a GPU
step: the loader's own ``downscale_to`` (512 by default, the short side too) then has nothing left to do, and
the shard set is several times smaller. The ``image`` column holds the stored bytes, ``width``/``height``
their size, and ``sha256`` stays the original file's, so dedupe identity and appends work as before. The
manifest records the setting, and an append with another setting is refused (one shard set never mixes two
resolutions). An image that cannot be decoded is skipped with its reason.

Crash safety: each shard is written to a hidden temporary name and renamed; the manifest (also written
atomically) is updated after every shard. A shard file not in the manifest (a crash between the rename and
the manifest update) and any temporary file are removed on the next run, and the deterministic writer
produces the same shard again.

Concurrency: a writer holds an exclusive lock (``flock``) on ``out_dir`` for its whole run, and a second
writer waits for it (or, with ``lock_timeout_s``, gives up with a "busy" ShardError). The manifest is read
under the lock, so the second writer sees the first one's shards and appends only what they lack: every image
is stored once. Temporary files carry the writer's pid and a random token; the leftovers removed are those of
writers no longer alive (the lock dies with its process, so a SIGKILLed writer never blocks the next one).

Tiny corpora: on the first write only, if a split with a positive fraction would get no cluster while there
are at least as many clusters as such splits, it takes the cluster whose point is nearest to its interval
from a split that has two or more (ties: smaller cluster_key). Appends use the plain hash rule, so for
corpora big enough that no split is empty (the common case) the rule never fires and nothing differs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gencomp.atomic import write_bytes_atomic
from gencomp.data.images import ImageRejected, open_image

SHARD_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),  # the original file's bytes, as scraped (or the downsized JPEG, with resize)
        ("sha256", pa.string()),  # of the original file, always
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("url", pa.string()),
        ("cluster_key", pa.string()),
        ("split", pa.string()),
    ]
)
MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
_SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
_TMP_PREFIX = ".tmp-"
_TMP_PID_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+-")
_MANIFEST_TMP_RE = re.compile(r"^\." + re.escape(MANIFEST_NAME) + r"\..*\.tmp$")  # write_bytes_atomic's temporaries
LOCK_NAME = "_writer.lock"  # used only where a folder itself cannot be locked


class ShardError(ValueError):
    """A shard set that is inconsistent with its manifest, or a write that would make it so."""


def _check_resize(resize: dict | None) -> dict | None:
    if resize is None:
        return None
    if set(resize) != {"max_short_side", "quality"}:
        raise ValueError(f"resize needs exactly max_short_side and quality, got {sorted(resize)}")
    side, quality = resize["max_short_side"], resize["quality"]
    if not isinstance(side, int) or side < 16:
        raise ValueError(f"resize.max_short_side must be an integer >= 16, got {side!r}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"resize.quality must be an integer in 1..100, got {quality!r}")
    return {"max_short_side": side, "quality": quality}


def downsize(data: bytes, max_short_side: int, quality: int) -> tuple[bytes, int, int]:
    """``(jpeg_bytes, width, height)``: the image upright (EXIF applied), its short side at most
    ``max_short_side`` (Lanczos), as JPEG at ``quality``. Raises ImageRejected for an undecodable image."""
    img = open_image(data, draft_size=(max_short_side, max_short_side))
    w, h = img.size
    scale = max_short_side / min(w, h)
    if scale < 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue(), img.width, img.height


def split_point(cluster_key: str, salt: str) -> float:
    """The cluster's position in [0, 1): the first 64 bits of sha256(salt NUL cluster_key)."""
    digest = hashlib.sha256(f"{salt}\0{cluster_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _intervals(split_fractions: dict[str, float]) -> list[tuple[str, float, float]]:
    out, lo = [], 0.0
    items = list(split_fractions.items())
    for k, (name, frac) in enumerate(items):
        hi = 1.0 if k == len(items) - 1 else lo + frac
        out.append((name, lo, hi))
        lo = hi
    return out


def assign_split(cluster_key: str, split_fractions: dict[str, float], salt: str) -> str:
    u = split_point(cluster_key, salt)
    for name, lo, hi in _intervals(split_fractions):
        if lo <= u < hi and hi > lo:
            return name
    return _intervals(split_fractions)[-1][0]


def _check_fractions(split_fractions: dict[str, float]) -> dict[str, float]:
    if not split_fractions:
        raise ValueError("split_fractions is empty")
    fr = {str(k): float(v) for k, v in split_fractions.items()}
    if any(v < 0 for v in fr.values()) or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be >= 0 and sum to 1, got {fr}")
    return fr


def _rebalance_tiny(points: dict[str, float], splits: dict[str, str], fractions: dict[str, float]) -> dict[str, str]:
    """The tiny-corpus rule of the module docstring (first write only)."""
    wanted = [name for name, frac in fractions.items() if frac > 0]
    if len(points) < len(wanted):
        return splits
    splits = dict(splits)
    bounds = {name: (lo, hi) for name, lo, hi in _intervals(fractions)}
    for name in wanted:
        members = [k for k, s in splits.items() if s == name]
        if members:
            continue
        lo, hi = bounds[name]
        counts = pd.Series(list(splits.values())).value_counts()
        donors = [k for k, s in splits.items() if counts[s] >= 2]
        if not donors:
            continue
        def gap(k: str, lo: float = lo, hi: float = hi) -> float:
            return (lo - points[k]) if points[k] < lo else max(0.0, points[k] - hi)

        splits[min(donors, key=lambda k: (gap(k), k))] = name
    return splits


def read_manifest(out_dir: str | Path) -> dict:
    """The shard manifest of ``out_dir``; FileNotFoundError if there is none."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no shard manifest at {path} (run the shard stage first)")
    manifest = json.loads(path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise ShardError(f"{path}: unknown manifest version {manifest.get('version')!r}")
    return manifest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    counts: dict[str, int] = {name: 0 for name in manifest["split_fractions"]}
    for shard in manifest["shards"]:
        for name, n in shard["splits"].items():
            counts[name] = counts.get(name, 0) + n
    manifest["split_counts"] = counts
    manifest["rows"] = sum(s["rows"] for s in manifest["shards"])
    manifest["bytes"] = sum(s["bytes"] for s in manifest["shards"])
    # Insertion order, not sorted keys: the order of split_fractions defines the split intervals.
    text = json.dumps(manifest, indent=2) + "\n"
    write_bytes_atomic(out_dir / MANIFEST_NAME, text.encode())


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier call in this process that was interrupted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_strays(out_dir: Path, listed: set[str]) -> list[str]:
    """Under the lock: temporaries of writers that are gone, and shard files the manifest does not list."""
    removed = []
    for p in sorted(out_dir.iterdir()):
        if p.name.startswith(_TMP_PREFIX):
            owner = _TMP_PID_RE.match(p.name)
            if owner and _alive(int(owner.group(1))):
                continue  # a live writer that does not take the lock (an older gencomp): not ours to delete
        elif not (_MANIFEST_TMP_RE.match(p.name) or (_SHARD_RE.match(p.name) and p.name not in listed)):
            continue
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


@contextlib.contextmanager
def writer_lock(out_dir: Path, timeout_s: float | None = None):
    """Hold an exclusive flock on ``out_dir`` (on a lock file in it where a folder cannot be locked). Waits
    for another writer; with ``timeout_s``, raises ShardError("busy") after that long."""
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # probe: some filesystems cannot lock a folder
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            pass  # another writer holds it exclusively: the folder is lockable
        else:
            os.close(fd)
            fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise ShardError(f"{out_dir} is busy: another shard writer holds its lock; try again when it "
                                     "has finished") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_one_shard(out_dir: Path, name: str, rows: pd.DataFrame, row_group_rows: int) -> dict:
    """Write ``rows`` (already in final order) as one shard; row groups break at split changes too."""
    tmp = out_dir / f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"
    groups = []
    start = 0
    splits = rows["split"].tolist()
    while start < len(rows):
        stop = min(start + row_group_rows, len(rows))
        for k in range(start + 1, stop):  # never mix splits inside a row group
            if splits[k] != splits[start]:
                stop = k
                break
        groups.append((start, stop))
        start = stop
    try:
        with pq.ParquetWriter(
            tmp,
            SHARD_SCHEMA,
            compression={c: ("NONE" if c == "image" else "ZSTD") for c in SHARD_SCHEMA.names},
            use_dictionary=["format", "split"],
            write_statistics=["sha256", "width", "height", "format", "cluster_key", "split"],
        ) as writer:
            for lo, hi in groups:
                chunk = rows.iloc[lo:hi]
                table = pa.Table.from_pydict({c: chunk[c].tolist() for c in SHARD_SCHEMA.names}, schema=SHARD_SCHEMA)
                writer.write_table(table, row_group_size=hi - lo)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = _file_sha256(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, out_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    split_rows = rows["split"].value_counts()
    return {
        "file": name,
        "rows": int(len(rows)),
        "bytes": int(size),
        "sha256": digest,
        "splits": {k: int(v) for k, v in sorted(split_rows.items())},
        "row_groups": [{"rows": int(hi - lo), "split": splits[lo]} for lo, hi in groups],
    }


def write_shards(
    clusters_parquet: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    target_rows: int | None = None,
    target_mb: float = 64,
    row_group_rows: int = 100,
    split_fractions: dict[str, float] | None = None,
    salt: str = "gencomp",
    resize: dict | None = None,
    lock_timeout_s: float | None = None,
) -> dict:
    """Append the kept images of ``clusters_parquet`` that no shard holds yet; return the manifest.

    A shard closes at ``target_rows`` rows (when given) or ``target_mb`` MB of image bytes, whichever comes
    first. ``resize`` (``{"max_short_side": int, "quality": int}`` or None) stores every image as a JPEG with its
    short side capped (see the module doc). The returned dict is the manifest plus ``written`` (new shard files), ``removed_stray`` and
    ``skipped`` (rows whose file is missing or no longer matches its sha256, with the reason).
    Concurrent writers to one ``out_dir`` take turns (see the module doc); ``lock_timeout_s`` bounds the wait.
    """
    clusters_parquet, images_dir, out_dir = Path(clusters_parquet), Path(images_dir), Path(out_dir)
    fractions = _check_fractions(split_fractions if split_fractions is not None else DEFAULT_SPLITS)
    resize = _check_resize(resize)
    if row_group_rows < 1:
        raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}")
    if target_rows is not None and target_rows < 1:
        raise ValueError(f"target_rows must be >= 1, got {target_rows}")
    if target_mb <= 0:
        raise ValueError(f"target_mb must be > 0, got {target_mb}")
    if not clusters_parquet.is_file():
        raise FileNotFoundError(f"clusters file {clusters_parquet} does not exist (run dedupe first)")
    clusters = pd.read_parquet(clusters_parquet)
    needed = {"path", "sha256", "keep", "cluster_key", "width", "height"}
    if missing := needed - set(clusters.columns):
        raise ValueError(f"{clusters_parquet} lacks columns {sorted(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with writer_lock(out_dir, lock_timeout_s):
        return _write_locked(clusters, clusters_parquet, images_dir, out_dir, fractions=fractions, salt=salt,
                             resize=resize, target_rows=target_rows, target_mb=target_mb,
                             row_group_rows=row_group_rows)


def _write_locked(clusters: pd.DataFrame, clusters_parquet: Path, images_dir: Path, out_dir: Path, *,
                  fractions: dict[str, float], salt: str, resize: dict | None, target_rows: int | None,
                  target_mb: float, row_group_rows: int) -> dict:
    if (out_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(out_dir)
        if manifest["salt"] != salt or list(manifest["split_fractions"].items()) != list(fractions.items()):
            raise ShardError(
                f"{out_dir} was sharded with salt={manifest['salt']!r}, split_fractions={manifest['split_fractions']}; "
                f"appending with salt={salt!r}, split_fractions={fractions} would move images between splits. "
                "Write to a new folder to draw a new split."
            )
        if manifest.get("resize") != resize:
            raise ShardError(
                f"{out_dir} was sharded with resize={manifest.get('resize')}; appending with resize={resize} would "
                "mix two resolutions in one shard set. Write to a new folder."
            )
    else:
        manifest = {"version": MANIFEST_VERSION, "salt": salt, "split_fractions": fractions, "shards": []}
        if resize is not None:
            manifest["resize"] = resize
    removed = _remove_strays(out_dir, {s["file"] for s in manifest["shards"]})

    have_sha, have_key = set(), set()
    for shard in manifest["shards"]:
        try:
            t = pq.read_table(out_dir / shard["file"], columns=["sha256", "cluster_key"])
        except (OSError, pa.ArrowException) as exc:
            raise ShardError(f"{out_dir / shard['file']}: listed in the manifest but unreadable ({exc}); restore it "
                             "from a backup or write to a new folder") from None
        have_sha.update(t.column("sha256").to_pylist())
        have_key.update(t.column("cluster_key").to_pylist())

    rows = clusters[clusters["keep"].astype(bool)]
    if "status" in rows.columns:
        rows = rows[rows["status"] == "ok"]
    rows = rows[~rows["sha256"].isin(have_sha) & ~rows["cluster_key"].isin(have_key)]
    rows = rows.sort_values(["sha256", "path"], kind="stable").drop_duplicates("sha256")
    rows = rows.drop_duplicates("cluster_key")  # one image per cluster, even from a hand-edited clusters file

    keys = sorted(rows["cluster_key"])
    points = {k: split_point(k, salt) for k in keys}
    split_of = {k: assign_split(k, fractions, salt) for k in keys}
    if not manifest["shards"]:
        split_of = _rebalance_tiny(points, split_of, fractions)
    rows = rows.assign(split=rows["cluster_key"].map(split_of))
    order = {name: k for k, name in enumerate(fractions)}
    rows = rows.assign(_o=rows["split"].map(order)).sort_values(["_o", "sha256"], kind="stable").drop(columns="_o")

    next_index = 1 + max((int(_SHARD_RE.match(s["file"]).group(1)) for s in manifest["shards"]), default=-1)
    limit_bytes = target_mb * 1_000_000
    written, skipped = [], []
    batch: list[dict] = []
    batch_bytes = 0

    def flush():
        nonlocal batch, batch_bytes, next_index
        if not batch:
            return
        name = f"part-{next_index:05d}.parquet"
        entry = _write_one_shard(out_dir, name, pd.DataFrame(batch), row_group_rows)
        manifest["shards"].append(entry)
        _write_manifest(out_dir, manifest)
        written.append(name)
        next_index += 1
        batch, batch_bytes = [], 0

    for r in rows.itertuples(index=False):
        path = images_dir / r.path
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append({"path": r.path, "sha256": r.sha256, "reason": f"unreadable: {exc}"})
            continue
        if hashlib.sha256(data).hexdigest() != r.sha256:
            skipped.append({"path": r.path, "sha256": r.sha256, "reason": "file changed since dedupe"})
            continue
        width, height, fmt = int(r.width), int(r.height), str(getattr(r, "format", "") or "")
        if resize is not None:
            try:
                data, width, height = downsize(data, resize["max_short_side"], resize["quality"])
            except ImageRejected as exc:
                skipped.append({"path": r.path, "sha256": r.sha256, "reason": str(exc)})
                continue
            fmt = "JPEG"
        batch.append(
            {
                "image": data,
                "sha256": r.sha256,
                "width": width,
                "height": height,
                "format": fmt,
                "url": str(getattr(r, "url", "") or ""),
                "cluster_key": r.cluster_key,
                "split": r.split,
            }
        )
        batch_bytes += len(data)
        if (target_rows is not None and len(batch) >= target_rows) or batch_bytes >= limit_bytes:
            flush()
    flush()
    if not (out_dir / MANIFEST_NAME).is_file():
        _write_manifest(out_dir, manifest)  # an empty shard set still has a manifest
    result = read_manifest(out_dir)
    result.update(written=written, removed_stray=removed, skipped=skipped)
    return result


def verify_shards(out_dir: str | Path) -> dict:
    """Check every shard against the manifest (size, sha256, row count); raise ShardError on the first mismatch.

    Also refuses shard files that the manifest does not list. Returns ``{"shards": n, "rows": n, "bytes": n}``.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    listed = {s["file"] for s in manifest["shards"]}
    unlisted = sorted(p.name for p in out_dir.iterdir() if _SHARD_RE.match(p.name) and p.name not in listed)
    if unlisted:
        raise ShardError(f"{out_dir}: shard files not in the manifest (an interrupted write?): {unlisted}")
    for shard in manifest["shards"]:
        path = out_dir / shard["file"]
        if not path.is_file():
            raise ShardError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != shard["bytes"]:
            raise ShardError(f"{path}: {path.stat().st_size} bytes, the manifest says {shard['bytes']} (corrupt shard)")
        digest = _file_sha256(path)
        if digest != shard["sha256"]:
            raise ShardError(f"{path}: sha256 {digest} does not match the manifest's {shard['sha256']} (corrupt shard)")
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != shard["rows"] or meta.num_row_groups != len(shard["row_groups"]):
            raise ShardError(f"{path}: {meta.num_rows} rows in {meta.num_row_groups} row groups, "
                             f"the manifest says {shard['rows']} in {len(shard['row_groups'])}")
    return {"shards": len(manifest["shards"]), "rows": manifest["rows"], "bytes": manifest["bytes"]}
