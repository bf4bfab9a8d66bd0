"""Exact (sha256) and perceptual hashes of image files, and the thumbnail that verifies them; a cache by sha256.

Every perceptual hash is computed from pixels decoded by :func:`gencomp.data.images.open_image` with the one
fixed :data:`HASH_DRAFT_SIZE`, so a hash never depends on which caller computed it. Hashes are 64-bit: the
8x8 bit matrix of ``imagehash`` packed row-major, most significant bit first, and stored as ``int64`` (the
same 64 bits read as two's complement; :func:`as_uint64` turns a column back into ``uint64``).

Besides pHash and dHash (``imagehash``'s, unchanged), every image gets what the verified near-duplicate
search needs (:mod:`gencomp.data.dedupe`), all from the same decode:

- ``thumb``: the 64x64 greyscale thumbnail of the whole image (squashed to a square), 4,096 bytes, which
  :mod:`gencomp.data.verify` aligns and compares;
- candidate hashes, one 64-bit pHash per *kind* (:data:`CANDIDATE_KINDS`): ``full`` (the whole image),
  ``c92`` (the centred 92 % box: equals ``full`` of an 8 % crop) and ``c60`` (the centred 60 % box: blind to
  a caption, a logo or the black corners of a turn in any corner).

Only pHash and dHash are resized from the decoded image itself (they must stay ``imagehash``'s values;
``full`` is the pHash's own 32x32 resize). The rest come from smaller copies, which is what makes hashing
cheap (see :func:`image_features`): the thumbnail is resized from the image box-reduced by an integer
factor (:data:`REDUCING_GAP`), and the ``c92``/``c60`` boxes are cut from the thumbnail.

Each candidate hash is computed in a *canonical orientation*: the box is mirrored left-right when its left
half is the brighter (the sign of the first horizontal DCT coefficient), so that an image and its mirror
image get the same hash. When that sign is too weak to be stable (under :data:`AMBIGUOUS` of the
low-frequency energy) the other orientation's hash is kept too, in ``<kind>_alt`` (otherwise
``<kind>_alt`` equals ``<kind>``); ``<kind>_mirrored`` says whether the stored hash is the mirrored one.

The cache (``hashes.parquet``) holds one row per sha256. A rerun or a rescrape hashes only sha256 values
not in it (or computed by another :data:`HASHER_ID`); files that cannot be decoded are cached too, with
their reason code, so they are not retried on every run and never stop it. Rows of another hasher (an
older version, whose thumbnails and candidate hashes were computed another way) are never mixed with
this one's: they are recomputed, and dropped when the file is rewritten. A cache written by an older
version without the columns above is not an error either: its rows are recomputed and the file rewritten.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import imagehash
import numpy as np
import scipy.fft
from PIL import Image
import pyarrow as pa
import pyarrow.parquet as pq

from gencomp.atomic import write_parquet_atomic
from gencomp.data.images import ImageRejected, open_image, probe

if TYPE_CHECKING:  # pandas is imported where frames are made: hashing workers never need it (0.3 s a start)
    import pandas as pd

# JPEGs decode by DCT scaling to at least this size on both sides (640x480 -> 320x240). imagehash then reduces
# to 32x32 (pHash) or 9x8 (dHash), so 4x oversampling of the pHash grid is plenty; decoding less is what makes
# hashing fast (640x480: 1.3 ms per image for both hashes, against 3.6 ms at 256 and 1.9 ms for a naive pHash).
HASH_DRAFT_SIZE: tuple[int, int] = (128, 128)
THUMB_SIDE = 64
# kind -> the centred share of the image it hashes
CANDIDATE_KINDS: dict[str, float] = {"full": 1.0, "c92": 0.92, "c60": 0.60}
AMBIGUOUS = 0.03  # |first horizontal DCT coefficient| / low-frequency AC energy under which both orientations count
# The thumbnail is resized from the image box-reduced (Image.reduce) by the largest integer factor that
# leaves the LANCZOS resize REDUCING_GAP times or more to do (Pillow's reducing_gap: from 3 on,
# "indistinguishable from fair resampling"). A JPEG's draft (short side under 256) is not reduced, so its
# thumbnail is the one resized from the whole decode; a large PNG's costs a fraction (1600x1200 -> 266x200
# first) and stays within about 1 grey level on average. A 2x box on the draft too (320x240 -> 160x120) saved
# another 0.2 ms per 640x480 JPEG, but its aliasing moves with the pixel grid: crop copies verified 0.007
# lower on average and the strict 8 % crop recall fell from 0.993 to 0.983 (BENCHMARKS.md, issue 17).
REDUCING_GAP = 3
# How the thumbnail and the c92/c60 hashes are computed; part of HASHER_ID, and of the verifier's id in
# gencomp.data.dedupe, since cached verification scores were computed from these thumbnails.
THUMB_METHOD = f"thumb{THUMB_SIDE}-box-gap{REDUCING_GAP}/c92-c60-from-thumb"
HASHER_ID = (f"imagehash-{imagehash.__version__}/phash8+dhash8+canon-full-c92-c60/{THUMB_METHOD}"
             f"/draft{HASH_DRAFT_SIZE[0]}x{HASH_DRAFT_SIZE[1]}")

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
READ_ERROR = "read_error"  # reason code for a file that could not be read at all (permissions, vanished)

HASH_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("phash", pa.int64()),
        ("dhash", pa.int64()),
        *[(f"{k}{suffix}", pa.int64()) for k in CANDIDATE_KINDS for suffix in ("", "_alt")],
        *[(f"{k}_mirrored", pa.bool_()) for k in CANDIDATE_KINDS],
        ("thumb", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("hasher", pa.string()),
    ]
)
HASH_COLUMNS = HASH_SCHEMA.names


def as_uint64(values) -> np.ndarray:
    """A hash column (int64 as stored, or Python ints) as ``uint64`` with the same 64 bits."""
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    return np.array([int(v) & 0xFFFFFFFFFFFFFFFF for v in arr.tolist()], dtype=np.uint64)


def _bits_to_int64(bits: np.ndarray) -> int:
    packed = np.packbits(np.asarray(bits, dtype=bool).reshape(-1))  # 8 bytes, MSB first
    return int(np.frombuffer(packed.tobytes(), dtype=">i8")[0])


_SIGN = np.where(np.arange(8) % 2, -1.0, 1.0)  # DCT of a left-right mirror: odd horizontal frequencies flip sign


def canonical_phash(grey32: np.ndarray) -> tuple[int, int, bool]:
    """(hash, alternative hash, mirrored) of a 32x32 greyscale array.

    The hash equals ``imagehash.phash`` of the array, or of its mirror image when the array's left half is
    the brighter one; the alternative is the other orientation's hash when the choice is ambiguous (see
    :data:`AMBIGUOUS`), else the same hash.
    """
    first, alt, mirrored, _ = _canonical_and_plain(np.asarray(grey32, dtype=np.float64)[None])
    return first[0], alt[0], mirrored[0]


def _canonical_and_plain(stack: np.ndarray) -> tuple[list[int], list[int], list[bool], list[int]]:
    """:func:`canonical_phash` of each of ``k`` 32x32 arrays (``stack``: k x 32 x 32 float64), in one pass.

    Returns four lists of ``k``: hash, alternative hash, mirrored, and the plain ``imagehash.phash`` (the
    same DCT as imagehash, and ``>`` the median of the 64 low coefficients, per array).
    """
    low = scipy.fft.dct(scipy.fft.dct(stack, axis=1), axis=2)[:, :8, :8]
    k = len(stack)
    both = np.concatenate([low, low * _SIGN]).reshape(2 * k, 64)  # plain orientations, then mirrored ones
    packed = np.packbits(both > np.median(both, axis=1, keepdims=True), axis=1)  # MSB first, 8 bytes a row
    codes = packed.view(">i8")[:, 0].astype(np.int64)
    plain, mirrored = codes[:k], codes[k:]
    ac = np.sqrt((low**2).sum(axis=(1, 2)) - low[:, 0, 0] ** 2) + 1e-9
    c01 = low[:, 0, 1] / ac
    # Canonical: the orientation whose first horizontal coefficient is <= 0 (the right half the brighter).
    use_mirror = c01 > 0
    first = np.where(use_mirror, mirrored, plain)
    alt = np.where(np.abs(c01) < AMBIGUOUS, np.where(use_mirror, plain, mirrored), first)
    return first.tolist(), alt.tolist(), use_mirror.tolist(), plain.tolist()


def _centred_box(size: tuple[int, int], share: float) -> tuple[float, float, float, float]:
    w, h = size
    return (1 - share) / 2 * w, (1 - share) / 2 * h, (1 + share) / 2 * w, (1 + share) / 2 * h


def _reduce_factor(size: tuple[int, int]) -> int:
    """The box reduction applied before the thumbnail's LANCZOS resize (see :data:`REDUCING_GAP`)."""
    return max(1, min(size) // (REDUCING_GAP * THUMB_SIDE))


def image_features(grey: Image.Image) -> dict:
    """Every perceptual value of a decoded greyscale image: phash, dhash, the candidate hashes, the thumbnail.

    Two LANCZOS resizes read the decoded image itself: 32x32 (``imagehash.phash``'s, which ``full`` shares)
    and 9x8 (``imagehash.dhash``'s), so both stay exactly imagehash's. The thumbnail is resized from a box
    reduction of the image by an integer factor (see :data:`REDUCING_GAP`), and the ``c92``/``c60`` boxes
    from the thumbnail: each of those reads a few thousand pixels instead of the whole decode.
    """
    lanczos = Image.Resampling.LANCZOS
    factor = _reduce_factor(grey.size)
    reduced = grey.reduce(factor) if factor > 1 else grey
    thumb = reduced.resize((THUMB_SIDE, THUMB_SIDE), lanczos)
    grids = [grey.resize((32, 32), lanczos) if share == 1.0  # the same 32x32 resize as imagehash.phash
             else thumb.resize((32, 32), lanczos, box=_centred_box(thumb.size, share))
             for share in CANDIDATE_KINDS.values()]
    first, alt, mirrored, plain = _canonical_and_plain(np.stack([np.asarray(g, dtype=np.float64) for g in grids]))
    row = {"dhash": _bits_to_int64(imagehash.dhash(grey).hash)}
    for i, (kind, share) in enumerate(CANDIDATE_KINDS.items()):
        row[kind], row[f"{kind}_alt"], row[f"{kind}_mirrored"] = first[i], alt[i], mirrored[i]
        if share == 1.0:  # imagehash.phash's resize and DCT: its value, computed once
            row["phash"] = plain[i]
    row["thumb"] = np.asarray(thumb, dtype=np.uint8).tobytes()
    return row


_PERCEPTUAL = ("phash", "dhash", *[f"{k}{s}" for k in CANDIDATE_KINDS for s in ("", "_alt", "_mirrored")], "thumb")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def hash_image_bytes(data: bytes) -> dict:
    """Hash one encoded image. Returns a row of :data:`HASH_SCHEMA`; never raises for bad image data.

    ``width``/``height``/``format`` are those of the file (EXIF orientation applied), not of the draft.
    """
    row = {
        "sha256": sha256_bytes(data),
        **{c: None for c in _PERCEPTUAL},
        "width": None,
        "height": None,
        "format": None,
        "status": STATUS_OK,
        "reason": "",
        "message": "",
        "hasher": HASHER_ID,
    }
    try:
        info = probe(data)
        row.update(width=info.width, height=info.height, format=info.format)
        grey = open_image(data, draft_size=HASH_DRAFT_SIZE).convert("L")
        row.update(image_features(grey))
    except ImageRejected as exc:
        row.update(status=STATUS_REJECTED, reason=exc.reason, message=exc.message, **{c: None for c in _PERCEPTUAL})
    return row


def hash_file(path: str | Path) -> dict:
    """:func:`hash_image_bytes` of a file; an unreadable file becomes a rejected row, not an exception."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        row = {c: None for c in HASH_COLUMNS}
        row.update(sha256="", status=STATUS_REJECTED, reason=READ_ERROR, message=str(exc), hasher=HASHER_ID)
        return row
    return hash_image_bytes(data)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    import pandas as pd

    # Nullable integer dtypes: a rejected row's missing hash must not turn the column into float64,
    # which cannot hold 64-bit hashes exactly.
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get)


def _rows_to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    return _to_pandas(pa.Table.from_pylist(list(rows), schema=HASH_SCHEMA))


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver, not fork: callers such as Prefect tasks run in threads, and forking a threaded process can
    # deadlock. This module is preloaded in the forkserver, so a pool's workers fork with numpy, scipy,
    # imagehash and pyarrow already imported: a pool of 2 then starts in about 0.03 s instead of 0.7-1.2 s
    # on 2 cores, which was more than hashing 600 images took. The preload only takes effect when the
    # process starts its forkserver (its first forkserver pool); otherwise workers import this module
    # themselves, as they did before.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


def _hash_rows(paths: Sequence[str], *, workers: int, chunksize: int) -> list[dict]:
    if workers <= 1 or len(paths) < 2 * chunksize:
        return [hash_file(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        return list(pool.map(hash_file, paths, chunksize=chunksize))


def hash_files(paths: Sequence[str | Path], *, workers: int = 2, chunksize: int = 16) -> pd.DataFrame:
    """Hash files in a process pool (``workers`` processes; 0 or 1 hashes in this process).

    Returns one row per input path, in input order, with the columns ``path`` + :data:`HASH_SCHEMA`.
    """
    paths = [str(p) for p in paths]
    frame = _rows_to_frame(_hash_rows(paths, workers=workers, chunksize=chunksize))
    frame.insert(0, "path", paths)
    return frame


def _read_cache_table(cache_path: str | Path) -> pa.Table:
    cache_path = Path(cache_path)
    if not cache_path.exists():
        return HASH_SCHEMA.empty_table()
    table = pq.read_table(cache_path)
    if not {"sha256", "hasher"} <= set(table.column_names):
        raise ValueError(f"{cache_path} is not a hash cache: it has no sha256/hasher columns "
                         f"(columns: {table.column_names})")
    if set(HASH_COLUMNS) - set(table.column_names):
        # Written by an older version (fewer hash kinds): every row would be recomputed anyway, since its
        # hasher id differs; start from an empty cache, which the caller then rewrites in full.
        return HASH_SCHEMA.empty_table()
    return table.select(HASH_COLUMNS).cast(HASH_SCHEMA)


def read_hash_cache(cache_path: str | Path) -> pd.DataFrame:
    """The cache as a frame (empty with the right columns if the file does not exist)."""
    return _to_pandas(_read_cache_table(cache_path))


def update_hash_cache(
    files: Sequence[tuple[str | Path, str]],
    cache_path: str | Path,
    *,
    workers: int = 2,
) -> pd.DataFrame:
    """Make sure every ``(path, sha256)`` in ``files`` has a cache row; hash only those that do not.

    The given sha256 (a manifest's, or :func:`sha256_file`) is trusted for the cache lookup. A file that is
    hashed now gets the sha256 of the bytes actually read, and a file that cannot be read gets a rejected row
    with reason ``read_error`` (not cached, so it is retried next time). The cache is rewritten atomically
    with its old rows kept, so it only grows. Returns one row per input file, in order: ``path`` +
    :data:`HASH_SCHEMA`.
    """
    cache_rows = [r for r in _read_cache_table(cache_path).to_pylist() if r["hasher"] == HASHER_ID]
    by_sha = {r["sha256"]: r for r in cache_rows}
    todo: dict[str, str] = {}  # sha256 -> path, one file per unknown sha256
    for path, sha in files:
        if sha not in by_sha and sha not in todo:
            todo[sha] = str(path)
    todo_paths = list(todo.values())
    fresh_rows = _hash_rows(todo_paths, workers=workers, chunksize=16) if todo_paths else []
    fresh_by_path = dict(zip(todo_paths, fresh_rows))
    for row in fresh_rows:
        if row["sha256"]:
            by_sha[row["sha256"]] = row
    table = pa.Table.from_pylist([by_sha[k] for k in sorted(by_sha)], schema=HASH_SCHEMA)
    write_parquet_atomic(table, cache_path, compression="zstd")

    out_rows = []
    for path, sha in files:
        path = str(path)
        row = dict(fresh_by_path[path] if todo.get(sha) == path else by_sha[sha])
        if row["sha256"] == "":  # unreadable: keep the caller's sha256 so the file stays identifiable
            row["sha256"] = sha
        out_rows.append(row)
    out = _rows_to_frame(out_rows)
    out.insert(0, "path", [str(p) for p, _ in files])
    return out
