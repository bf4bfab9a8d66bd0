"""The crawl manifest: ``<out>/manifest.parquet``, one row per URL tried, appended across rescrapes.

A distributed crawl (``--redis-url``, several processes) cannot share one file, so each process writes its own
part, ``<out>/manifest-parts/part-<crawl_id>.parquet`` (only that process's rows, same schema), and the last
process to finish merges the parts into ``manifest.parquet`` (:func:`merge_manifest_parts`; also
``python -m scraper.crawl --merge-only --out DIR``). :func:`read_manifest` already returns the union of the
file and any parts not merged yet. A part counts as merged once the file holds rows with its ``crawl_id``
(each process's ``crawl_id`` is unique), so a merge interrupted between writing the file and deleting the
parts never duplicates rows.

Every image URL the crawl tried gets a row, whatever happened to it (``status`` is "ok" or a reason code), and
so does every page that failed; nothing is dropped silently. A rescrape into the same folder appends its rows
after the old ones, so the newest row for a URL is its current state and the older rows are its history.

Columns (:data:`MANIFEST_SCHEMA`):
    url            canonical URL that was requested
    page_url       page the URL was found on ("" for start URLs)
    kind           "image" or "page"
    status         "ok" | "not_modified" | "duplicate_content" | "vanished" | a reason code (see STATUSES)
    error          human-readable message, "" when ok
    http_status    final HTTP status, 0 when no response arrived (timeout, robots, offsite, blocked ...)
    sha256         hash of the body ("" when none); for not_modified, the stored file's hash
    path           stored file relative to the out dir, "" when nothing is stored for this row
    width, height  pixels as displayed (EXIF orientation applied), 0 when unknown
    format         Pillow format name ("JPEG", "PNG" ...), "" when unknown
    frames         frame count (animations), 0 when unknown
    bytes          body size in bytes, 0 when none
    content_type   Content-Type response header
    fetched_at     UTC time the row was produced
    etag, last_modified   validators from the response, used for conditional requests on the next run
    license        licence hint from the page (rel=license / meta), "" if none
    crawl_id       identifies the run that wrote the row (UTC start time)

Which rows point at stored files: ``path != ""`` (statuses ok, not_modified, duplicate_content). Unique stored
images: the distinct ``sha256`` over those rows; status "ok" alone lists each content once per run.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gencomp.atomic import write_parquet_atomic

MANIFEST_NAME = "manifest.parquet"
PARTS_DIR_NAME = "manifest-parts"
PART_PREFIX = "part-"
_CRAWL_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

MANIFEST_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("page_url", pa.string()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("http_status", pa.int32()),
        ("sha256", pa.string()),
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("frames", pa.int32()),
        ("bytes", pa.int64()),
        ("content_type", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
        ("etag", pa.string()),
        ("last_modified", pa.string()),
        ("license", pa.string()),
        ("crawl_id", pa.string()),
    ]
)
MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA.names)

# Statuses that point at a stored file.
STORED_STATUSES: frozenset[str] = frozenset({"ok", "not_modified", "duplicate_content"})

# Every status the crawler writes, for documentation and validation of rows.
STATUSES: frozenset[str] = STORED_STATUSES | frozenset(
    {
        "vanished",  # was stored by an earlier run, now 404/410
        "duplicate_url",  # the same canonical URL found again on another page: fetched once only
        "robots",  # disallowed by robots.txt, never requested
        "offsite",  # outside the allowed origins (scheme, host, port), never requested
        "offsite_redirect",  # the server redirected outside the allowed origins; the redirect was not followed
        "blocked_origin",  # a request outside the allowed origins reached the downloader (e.g. from a shared queue)
        "blocked_private_address",  # the host is or resolves to a non-public address; nothing was sent
        "too_many_redirects",
        "timeout",
        "too_large_bytes",  # body over the byte cap; the download was aborted
        "connection_error",
        "data_loss",  # the connection closed before the announced body length arrived
        "validation_error",  # a validation worker crashed
        "skipped",  # downloaded after --max-images was reached, not validated
        "download_error",
        "ignored",  # dropped by another Scrapy component (the message says which)
        "http_5xx",
        # http_<code> for 4xx and other non-2xx codes, plus the image reason codes of gencomp.data.images:
        "not_an_image",
        "unsupported_format",
        "too_large",
        "too_small",
        "truncated",
        "corrupt",
    }
)

_DEFAULTS = {
    pa.string(): "",
    pa.int32(): 0,
    pa.int64(): 0,
}


def manifest_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / MANIFEST_NAME


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def normalise_row(row: dict) -> dict:
    """A row with exactly the manifest columns: missing values get their column default, extras are an error."""
    extra = set(row) - set(MANIFEST_COLUMNS)
    if extra:
        raise ValueError(f"unknown manifest columns {sorted(extra)}")
    for required in ("url", "status"):
        if not row.get(required):
            raise ValueError(f"manifest row lacks {required!r}: {row!r}")
    out = {}
    for field in MANIFEST_SCHEMA:
        value = row.get(field.name)
        if value is None:
            value = utc_now() if field.name == "fetched_at" else _DEFAULTS[field.type]
        out[field.name] = value
    return out


def rows_to_table(rows: list[dict]) -> pa.Table:
    normalised = [normalise_row(r) for r in rows]
    return pa.Table.from_pylist(normalised, schema=MANIFEST_SCHEMA)


def part_path(out_dir: str | Path, crawl_id: str) -> Path:
    """Where the process with this ``crawl_id`` writes its manifest part."""
    if not _CRAWL_ID_RE.match(crawl_id):
        raise ValueError(f"crawl_id {crawl_id!r} must match {_CRAWL_ID_RE.pattern} (it names a file)")
    return Path(out_dir) / PARTS_DIR_NAME / f"{PART_PREFIX}{crawl_id}.parquet"


def part_paths(out_dir: str | Path) -> list[Path]:
    """Every manifest part under ``out_dir``, sorted by name (i.e. by the start time in the crawl_id)."""
    folder = Path(out_dir) / PARTS_DIR_NAME
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PART_PREFIX}*.parquet") if p.is_file())


def _read_table(path: Path) -> pa.Table:
    table = pq.read_table(path)
    missing = set(MANIFEST_COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"{path} is not a crawl manifest: it lacks columns {sorted(missing)}")
    return table.select(list(MANIFEST_COLUMNS)).cast(MANIFEST_SCHEMA)


def _unmerged_parts(main: pa.Table, parts: list[Path]) -> tuple[list[pa.Table], list[Path]]:
    """(tables of the parts not yet in ``main``, paths of the parts already in it)."""
    merged_ids = set(pc.unique(main["crawl_id"]).to_pylist()) if main.num_rows else set()
    tables, merged = [], []
    for path in parts:
        table = _read_table(path)
        ids = set(pc.unique(table["crawl_id"]).to_pylist()) if table.num_rows else set()
        if ids and ids <= merged_ids:
            merged.append(path)
        elif table.num_rows:
            tables.append(table)
        else:
            merged.append(path)  # an empty part adds nothing
    return tables, merged


def read_manifest(out_dir: str | Path, *, include_parts: bool = True) -> pa.Table:
    """The manifest table, or an empty one with the schema when none exists yet.

    With ``include_parts`` (the default), the rows of manifest parts not merged yet follow the file's rows,
    sorted by ``fetched_at`` (one distributed run's processes interleave in time). Raises ``ValueError`` when
    a file exists but lacks manifest columns: appending to a foreign file would lose its data.
    """
    path = manifest_path(out_dir)
    main = _read_table(path) if path.exists() else MANIFEST_SCHEMA.empty_table()
    if not include_parts:
        return main
    tables, _ = _unmerged_parts(main, part_paths(out_dir))
    if not tables:
        return main
    new_rows = pa.concat_tables(tables)
    order = pc.sort_indices(new_rows, sort_keys=[("fetched_at", "ascending")])  # stable
    return pa.concat_tables([main, new_rows.take(order)])


def _write_table_atomic(path: Path, table: pa.Table) -> Path:
    return write_parquet_atomic(table.cast(MANIFEST_SCHEMA), path, compression="zstd")


def write_manifest(out_dir: str | Path, table: pa.Table) -> Path:
    """Write the whole manifest atomically (temp file in the same folder, then ``os.replace``)."""
    return _write_table_atomic(manifest_path(out_dir), table)


def write_manifest_part(out_dir: str | Path, crawl_id: str, table: pa.Table) -> Path:
    """Write this process's part atomically; every row must carry ``crawl_id`` (that is how merges are tracked)."""
    if table.num_rows and set(pc.unique(table["crawl_id"]).to_pylist()) != {crawl_id}:
        raise ValueError(f"a manifest part holds the rows of one crawl_id ({crawl_id!r}) only")
    return _write_table_atomic(part_path(out_dir, crawl_id), table)


@contextmanager
def _manifest_lock(out_dir: str | Path) -> Iterator[None]:
    """An exclusive lock on the out dir's manifest, so two merges never interleave read and write.

    The lock is taken on the folder itself (flock works on a directory's descriptor), so it leaves no file.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def merge_manifest_parts(out_dir: str | Path) -> tuple[Path, int]:
    """Append the rows of every unmerged part to ``manifest.parquet`` and delete the parts.

    Returns (manifest path, number of part files merged or removed). Safe to run while no crawl process is
    writing parts into ``out_dir``, and safe to repeat: a part already in the file is only deleted.
    """
    with _manifest_lock(out_dir):
        path = manifest_path(out_dir)
        main = _read_table(path) if path.exists() else MANIFEST_SCHEMA.empty_table()
        parts = part_paths(out_dir)
        tables, _ = _unmerged_parts(main, parts)
        if tables or not path.exists():
            write_manifest(out_dir, read_manifest(out_dir))
        for part in parts:  # every part is now in the file
            part.unlink(missing_ok=True)
        try:
            (Path(out_dir) / PARTS_DIR_NAME).rmdir()
        except OSError:
            pass  # absent, or not empty (a temp file of a writer that is still running)
        return path, len(parts)


def prune_merged_parts(out_dir: str | Path) -> int:
    """Delete the parts whose rows ``manifest.parquet`` already holds; returns how many were deleted."""
    if not part_paths(out_dir):
        return 0
    with _manifest_lock(out_dir):
        path = manifest_path(out_dir)
        if not path.exists():
            return 0
        _, merged = _unmerged_parts(_read_table(path), part_paths(out_dir))
        for part in merged:
            part.unlink(missing_ok=True)
        return len(merged)


@dataclass(frozen=True)
class PreviousImage:
    """What an earlier run knew about an image URL: enough for a conditional request and a 304 row."""

    url: str
    status: str
    sha256: str
    path: str
    width: int
    height: int
    format: str
    frames: int
    bytes: int
    content_type: str
    etag: str
    last_modified: str

    @property
    def stored(self) -> bool:
        return self.status in STORED_STATUSES and bool(self.path)


def previous_images(table: pa.Table) -> dict[str, PreviousImage]:
    """The latest row per image URL of an existing manifest (rows are in run order, so the last one wins).

    A URL whose latest row is not a stored file is still returned (``stored`` is False) so a rescrape knows
    it was tried; only stored entries get conditional headers.
    """
    latest: dict[str, PreviousImage] = {}
    columns = list(PreviousImage.__dataclass_fields__)
    images = table.filter(pc.equal(table["kind"], "image")) if table.num_rows else table
    for rec in images.select(columns).to_pylist():
        entry = PreviousImage(**rec)
        current = latest.get(entry.url)
        if entry.status == "duplicate_url":
            continue  # says nothing about the URL's content
        if entry.stored or entry.status == "vanished" or current is None or not current.stored:
            latest[entry.url] = entry
        # else: a transient failure (timeout, 5xx, robots) after a stored row leaves the file current.
    return latest


def known_hashes(table: pa.Table) -> set[str]:
    """sha256 values of content already stored by earlier runs."""
    if not table.num_rows:
        return set()
    stored = table.filter(pc.not_equal(table["path"], ""))
    return set(stored["sha256"].to_pylist())
