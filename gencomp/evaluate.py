"""The evaluation grid: codecs x settings x images, one cached unit of work per (cell, image).

A *spec* is a plain list of dicts (params.yaml ``evaluate.grid``)::

    {"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)", "tables": ["table1", "table2"]}
    {"codec": "webp", "settings": {"method": 6}, "sweep": {"quality": [5, 20, 50]}, "tables": ["rd"]}

:func:`expand_grid` turns it into :class:`Cell` objects: a ``sweep`` gives one cell per value (several swept
keys give their product), with ``settings`` held fixed. Labels default to ``"codec key=value ..."``. Each cell
has a *group*, the curve it belongs to on RD plots: for a sweep, ``group`` or ``label`` of the entry, else the
codec name plus its fixed settings; for a single setting, ``group`` or else the cell's label (so single points
are labelled like the tables). Give several entries the same ``group`` to join them into one curve.

:func:`run_grid` computes every (cell, image) unit that is not cached yet. The cache key is the SHA-256 of the
codec name, the codec's fingerprint (its weights), the image's SHA-256, a digest of the image's pixels (so an
image resized by the caller under its file's hash cannot hit a stale entry) and the canonical JSON of the
codec's resolved settings (defaults included, so changing a codec default invalidates its entries). Each unit
writes one small JSON file atomically, so a crash loses only the units in flight and adding a setting computes
only the new units. A failing unit is recorded in the ``error`` column and is not cached (it is retried on the
next run); it never stops the grid.

Each computed unit also stores the SWD patch descriptors of its reconstruction beside its entry
(``<key>.swd.npz``, and ``images/<pixels>.swd.npz`` for the original): the ``swd_set`` column, the sliced
Wasserstein distance between a data set's originals and their reconstructions by one cell, is computed from
them, so cached units count without being decoded again; the value is cached under ``sets/`` by the set of
unit keys. Entries written before the perceptual columns existed (no ``haarpsi``, ... or no descriptors) are
computed again.

Each row names its test data set (``dataset``) and, for a generative codec, the model it used (``model``: the zoo
name when the weights are a zoo model's, else the file) and that model's training domain (``model_domain``, from
the zoo and the model's sidecar, see :func:`gencomp.models.zoo.model_domain`; "unknown" for a file without
metadata); both are empty for a classical codec. The report's cross-domain table is built from them.

Units go through ``map_fn(fn, items)``: the function is the module-level :func:`compute_unit` and the items
are plain dicts holding file paths (images are staged once as PNG under ``cache_dir/images``), so a Prefect
task map or a Dask map can ship them to other processes or machines that share ``cache_dir``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from gencomp import metrics, perceptual
from gencomp.codecs.base import ModelCodec, get_codec
from gencomp.data.eval_sets import folder_images, pixels_sha256
from gencomp.data.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS, encode_png, open_image
from gencomp.atomic import write_bytes_atomic, write_with
from gencomp.samples import ORIGINAL_SAMPLE_NAME, sample_folder, slugify

log = logging.getLogger(__name__)

SPEC_KEYS = frozenset({"codec", "settings", "sweep", "label", "group", "tables"})
RESULT_COLUMNS = [
    "dataset", "image", "sha256", "width", "height", "cell", "codec", "family", "fingerprint", "model",
    "model_domain", "label", "group", "settings", "tables", "bytes", "bpp", "cr", "psnr", "ssim", "ms_ssim", "haarpsi", "gmsd", "vif", "swd",
    "swd_set", "enc_ms", "dec_ms", "error",
]  # fmt: skip
METRIC_FIELDS = ("bytes", "bpp", "cr", "psnr", "ssim", "ms_ssim", "haarpsi", "gmsd", "vif", "swd", "enc_ms", "dec_ms")
CACHE_FORMAT = 1  # bump when the content of a cache entry changes meaning


def canonical_json(value: Any) -> str:
    """Sorted-key, whitespace-free JSON: the one spelling of a settings dict (keys and labels depend on it)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"settings must be plain JSON data (str, number, bool, list, dict): {exc}") from exc


@dataclass(frozen=True, eq=True)
class Cell:
    """One codec with one setting: a column of the grid."""

    index: int  # position in the expanded spec: tables list cells in this order
    codec: str
    settings: dict[str, Any] = field(hash=False)
    label: str
    group: str
    tables: tuple[str, ...] = ()

    @property
    def settings_json(self) -> str:
        return canonical_json(self.settings)

    @property
    def slug(self) -> str:
        return slugify(self.label)


def _format_value(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _describe(codec: str, settings: Mapping[str, Any]) -> str:
    return " ".join([codec] + [f"{k}={_format_value(settings[k])}" for k in sorted(settings)])


def _parse_tables(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise ValueError(f"{where}: 'tables' must be a list of names or a comma-separated string, got {value!r}")


def expand_grid(spec: Sequence[Mapping[str, Any]]) -> list[Cell]:
    """Expand a grid spec (module docstring) into cells, in spec order. Raises ValueError on a bad entry."""
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise ValueError(f"grid spec must be a list of dicts, got {type(spec).__name__}")
    cells: list[Cell] = []
    for n, entry in enumerate(spec):
        where = f"grid entry {n}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(entry).__name__}")
        unknown = set(entry) - SPEC_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
        codec = entry.get("codec")
        if not isinstance(codec, str) or not codec:
            raise ValueError(f"{where}: 'codec' must be a codec name")
        where = f"grid entry {n} ({codec})"
        if not isinstance(entry.get("settings") or {}, Mapping):
            raise ValueError(f"{where}: 'settings' must be a dict")
        fixed = dict(entry.get("settings") or {})
        canonical_json(fixed)
        tables = _parse_tables(entry.get("tables"), where)
        label, group = entry.get("label"), entry.get("group")
        for name, value in (("label", label), ("group", group)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{where}: '{name}' must be a non-empty string")
        sweep = entry.get("sweep")
        if sweep is None:
            cell_label = label or _describe(codec, fixed)
            cells.append(Cell(len(cells), codec, fixed, cell_label, group or cell_label, tables))
            continue
        if not isinstance(sweep, Mapping) or not sweep:
            raise ValueError(f"{where}: 'sweep' must be a non-empty dict of setting -> list of values")
        for key, values in sweep.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise ValueError(f"{where}: sweep of {key!r} must be a non-empty list")
            if key in fixed:
                raise ValueError(f"{where}: {key!r} is both a fixed setting and swept")
        keys = sorted(sweep)
        curve = group or label or _describe(codec, fixed)
        prefix = label or _describe(codec, fixed)
        for combo in itertools.product(*(sweep[k] for k in keys)):
            swept = dict(zip(keys, combo))
            settings = {**fixed, **swept}
            canonical_json(settings)
            cell_label = " ".join([prefix] + [f"{k}={_format_value(v)}" for k, v in swept.items()])
            cells.append(Cell(len(cells), codec, settings, cell_label, curve, tables))
    _check_unique_names(cells)
    return cells


def _check_unique_names(cells: Sequence[Cell]) -> None:
    seen_labels: dict[str, int] = {}
    seen_slugs: dict[str, str] = {}
    for cell in cells:
        if cell.label in seen_labels:
            raise ValueError(f"two grid cells share the label {cell.label!r}; give each entry its own label")
        if cell.slug in seen_slugs or cell.slug == ORIGINAL_SAMPLE_NAME:
            other = seen_slugs.get(cell.slug, "the original image's sample")
            raise ValueError(f"labels {cell.label!r} and {other!r} map to the same file name {cell.slug!r}")
        seen_labels[cell.label] = cell.index
        seen_slugs[cell.slug] = cell.label


# ---------------------------------------------------------------- files


def _atomic_copy(src: Path, dst: Path) -> None:
    write_with(dst, lambda tmp: shutil.copyfile(src, tmp), durable=False)  # no fsync: rebuilt from the cache if lost


def write_results(results: pd.DataFrame, path: str | Path) -> Path:
    """Write a results frame to Parquet atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    frame = results.copy()
    frame.attrs = {}  # run statistics are not part of the results
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _unit_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    folder = cache_dir / "units" / key[:2]
    return folder / f"{key}.json", folder / f"{key}.png"



def unit_key(
    *, codec: str, fingerprint: str, image_sha256: str, pixels_sha256: str, settings_json: str
) -> str:
    """Cache key of one (cell, image) unit (see the module docstring for what goes in and why)."""
    payload = canonical_json(
        {
            "format": CACHE_FORMAT,
            "codec": codec,
            "fingerprint": fingerprint,
            "image_sha256": image_sha256,
            "pixels_sha256": pixels_sha256,
            "settings": settings_json,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_cached(path: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable entry: recompute rather than trust it
        log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
        return None
    if not isinstance(entry, dict) or entry.get("error") or any(f not in entry for f in METRIC_FIELDS):
        return None
    return entry


# ---------------------------------------------------------------- one unit of work

_thread_state = threading.local()
_CODECS_PER_THREAD = 4  # codecs can hold model weights; keep a few, in cell order most units hit the newest


def _codec_for(name: str, settings_json: str, fingerprint: str):
    cache = getattr(_thread_state, "codecs", None)
    if cache is None:
        cache = _thread_state.codecs = collections.OrderedDict()
    key = (name, settings_json, fingerprint)  # a retrained model (new fingerprint) gets a fresh instance
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    codec = get_codec(name, **json.loads(settings_json))
    actual = bytes(codec.fingerprint).hex()
    if actual != fingerprint:
        raise RuntimeError(
            f"codec {name!r} here has fingerprint {actual or '(none)'} but the grid expected "
            f"{fingerprint or '(none)'}: this worker sees a different model file"
        )
    cache[key] = codec
    while len(cache) > _CODECS_PER_THREAD:
        cache.popitem(last=False)
    return codec


def compute_unit(unit: Mapping[str, Any]) -> dict[str, Any]:
    """Encode, decode and measure one image with one codec setting; write the cache entry.

    ``unit`` is a plain dict (picklable) built by :func:`run_grid`: key, codec, settings_json, fingerprint
    (hex, checked against the codec built here), image_path, image_sha256, cache_path and
    reconstruction_path (where to keep the decoded PNG, or None).
    Never raises for a codec failure: the returned dict then has ``error`` set and nothing is cached.
    """
    result: dict[str, Any] = {"key": unit["key"], "error": None, **{f: None for f in METRIC_FIELDS}}
    try:
        original = open_image(Path(unit["image_path"]))
        codec = _codec_for(unit["codec"], unit["settings_json"], unit["fingerprint"])
        start = time.perf_counter()
        data = codec.encode(original)
        enc_ms = 1000.0 * (time.perf_counter() - start)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"encode returned {type(data).__name__}, not bytes")
        start = time.perf_counter()
        decoded = codec.decode(bytes(data))
        dec_ms = 1000.0 * (time.perf_counter() - start)
        if not isinstance(decoded, Image.Image):
            raise TypeError(f"decode returned {type(decoded).__name__}, not a PIL image")
        if decoded.size != original.size:
            raise ValueError(
                f"decoded image is {decoded.width}x{decoded.height}, original {original.width}x{original.height}"
            )
        decoded = decoded.convert("RGB") if decoded.mode != "RGB" else decoded
        rate = metrics.bpp(len(data), original.width, original.height)
        # SWD from descriptors, kept beside the entry for the data set's SWD (swd_set)
        descriptors = perceptual.swd_descriptors(np.asarray(decoded))
        original_descriptors = perceptual.cached_descriptors(
            np.asarray(original), perceptual.descriptors_path(unit["image_path"])
        )
        result.update(
            bytes=len(data),
            bpp=rate,
            cr=metrics.compression_ratio(rate),
            enc_ms=enc_ms,
            dec_ms=dec_ms,
            **metrics.all_metrics(original, decoded),
            swd=perceptual.swd_sets([original_descriptors], [descriptors]),
        )
        perceptual.save_descriptors(perceptual.descriptors_path(unit["cache_path"]), descriptors)
        if unit.get("reconstruction_path"):
            write_bytes_atomic(Path(unit["reconstruction_path"]), encode_png(decoded))
    except Exception as exc:  # one unit's failure is a result, not the end of the grid
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    entry = {
        "format": CACHE_FORMAT,
        "codec": unit["codec"],
        "settings": unit["settings_json"],
        "image_sha256": unit.get("image_sha256"),
        **result,
    }
    write_bytes_atomic(Path(unit["cache_path"]), json.dumps(entry, sort_keys=True).encode())
    return result


def _thread_map(workers: int) -> Callable[[Callable, list], list]:
    def map_fn(fn: Callable, items: list) -> list:
        if not items:
            return []
        pool_size = max(1, min(workers, len(items)))
        # Each unit's torch ops would otherwise use every core too, and OpenMP threads spin while they wait:
        # 2 units x 2 threads on 2 cores ran a GAN/VAE-GAN grid 13 % slower than 2 units x 1 thread.
        threads_before = torch.get_num_threads()
        torch.set_num_threads(max(1, threads_before // pool_size))
        try:
            with ThreadPoolExecutor(max_workers=pool_size) as pool:
                return list(pool.map(fn, items))
        finally:
            torch.set_num_threads(threads_before)

    return map_fn


# ---------------------------------------------------------------- the grid


@dataclass
class _CellInfo:
    cell: Cell
    fingerprint: str = ""
    family: str = ""
    model: str = ""  # the zoo name or file of a generative codec's model; "" for a classical codec
    model_domain: str = ""  # its training domain (gencomp.models.zoo.model_domain); "" for a classical codec
    resolved_json: str = ""
    error: str | None = None


def _describe_model(info: _CellInfo, codec: Any) -> None:
    """The model a generative codec uses and the domain it was trained on, for the cross-domain report."""
    from gencomp.models import zoo

    loaded = codec.loaded
    info.model = zoo.model_name(codec.settings.get("model"), loaded.path, loaded.fingerprint)
    info.model_domain = zoo.model_domain(loaded.path, loaded.fingerprint, loaded.metadata)


def _prepare_cells(cells: Sequence[Cell]) -> list[_CellInfo]:
    infos = []
    for cell in cells:
        info = _CellInfo(cell)
        try:
            codec = get_codec(cell.codec, **cell.settings)
            info.fingerprint = bytes(codec.fingerprint).hex()
            info.family = str(getattr(codec, "family", ""))
            if isinstance(codec, ModelCodec):
                _describe_model(info, codec)
            info.resolved_json = canonical_json(json.loads(json.dumps(codec.defining_settings(), default=str)))
        except Exception as exc:
            info.error = f"cannot create codec: {type(exc).__name__}: {exc}"
            log.error("cell %r: %s", cell.label, info.error)
        infos.append(info)
    return infos


@dataclass
class _ImageInfo:
    dataset: str
    image: str
    sha256: str
    pixels_sha256: str
    width: int
    height: int
    path: Path
    is_sample: bool


def _stage_images(datasets: Mapping[str, Iterable], cache_dir: Path, sample_images: int) -> list[_ImageInfo]:
    staged = []
    for dataset, items in datasets.items():
        seen: set[str] = set()
        for position, item in enumerate(items):
            try:
                image_id, sha256, image = item
            except (TypeError, ValueError):
                raise ValueError(
                    f"dataset {dataset!r}: items must be (image_id, sha256, PIL image)"
                ) from None
            image_id = str(image_id)
            if image_id in seen:
                raise ValueError(f"dataset {dataset!r}: image id {image_id!r} appears twice")
            seen.add(image_id)
            if not isinstance(image, Image.Image):
                raise ValueError(f"dataset {dataset!r}, image {image_id!r}: expected a PIL image")
            image = image.convert("RGB") if image.mode != "RGB" else image
            pixels = pixels_sha256(image)
            path = cache_dir / "images" / f"{pixels}.png"
            if not path.exists():
                write_bytes_atomic(path, encode_png(image))
            staged.append(
                _ImageInfo(dataset, image_id, str(sha256), pixels, image.width, image.height, path,
                           position < sample_images)
            )  # fmt: skip
    return staged


def run_grid(
    cells: Sequence[Cell],
    datasets: Mapping[str, Iterable[tuple[str, str, Image.Image]]],
    *,
    cache_dir: str | Path,
    map_fn: Callable[[Callable, list], list] | None = None,
    samples_dir: str | Path | None = None,
    sample_images: int = 1,
    workers: int | None = None,
) -> pd.DataFrame:
    """Evaluate every cell on every image; one row per (dataset, image, cell), sorted by those.

    ``datasets`` maps a name to an iterable of ``(image_id, sha256, PIL RGB image)``. Only units missing from
    ``cache_dir`` are computed, through ``map_fn(compute_unit, units)`` (default: a thread pool of ``workers``
    threads, default ``min(4, cpu count)``). With ``samples_dir``, the first ``sample_images`` images of each
    dataset get ``samples_dir/<dataset>/<image>/original.png`` and ``<slug(label)>.png`` for every cell.
    ``result.attrs`` holds ``{"units": n, "computed": n, "cached": n, "failed": n}`` for this run.
    """
    cells = list(cells)
    _check_unique_names(cells)
    if sample_images < 0:
        raise ValueError(f"sample_images must be >= 0, got {sample_images}")
    cache_dir = Path(cache_dir)
    samples_root = Path(samples_dir) if samples_dir is not None else None
    keep_samples = samples_root is not None and sample_images > 0
    infos = _prepare_cells(cells)
    images = _stage_images(datasets, cache_dir, sample_images if keep_samples else 0)

    outcomes: dict[tuple[int, int], dict[str, Any]] = {}
    pending: list[dict[str, Any]] = []
    pending_ids: list[tuple[int, int]] = []
    # cell-major order: consecutive units share a codec instance (and its model) in each worker
    for ci, info in enumerate(infos):
        for ii, img in enumerate(images):
            if info.error:
                outcomes[ci, ii] = {"error": info.error, **{f: None for f in METRIC_FIELDS}}
                continue
            key = unit_key(
                codec=info.cell.codec,
                fingerprint=info.fingerprint,
                image_sha256=img.sha256,
                pixels_sha256=img.pixels_sha256,
                settings_json=info.resolved_json,
            )
            cache_path, recon_path = _unit_paths(cache_dir, key)
            cached = _read_cached(cache_path)
            if (
                cached is not None
                and (not img.is_sample or recon_path.exists())
                and perceptual.descriptors_path(cache_path).exists()
            ):
                outcomes[ci, ii] = cached
                continue
            pending.append(
                {
                    "key": key,
                    "codec": info.cell.codec,
                    "settings_json": info.cell.settings_json,
                    "fingerprint": info.fingerprint,
                    "image_path": str(img.path),
                    "image_sha256": img.sha256,
                    "cache_path": str(cache_path),
                    "reconstruction_path": str(recon_path) if img.is_sample else None,
                }
            )
            pending_ids.append((ci, ii))

    if pending:
        log.info("grid: %d of %d units to compute", len(pending), len(infos) * len(images))
        mapper = map_fn or _thread_map(workers or min(4, os.cpu_count() or 1))
        results = list(mapper(compute_unit, pending))
        if len(results) != len(pending):
            raise RuntimeError(f"map_fn returned {len(results)} results for {len(pending)} units")
        for ids, result in zip(pending_ids, results):
            outcomes[ids] = result
            if result.get("error"):
                log.warning(
                    "unit failed: %s on %s: %s",
                    infos[ids[0]].cell.label,
                    images[ids[1]].image,
                    result["error"],
                )

    if keep_samples:
        _write_samples(infos, images, outcomes, cache_dir, samples_root)
    swd_sets = _set_swd(infos, images, outcomes, cache_dir)

    rows = []
    for (ci, ii), outcome in outcomes.items():
        info, img = infos[ci], images[ii]
        rows.append(
            {
                "dataset": img.dataset,
                "image": img.image,
                "sha256": img.sha256,
                "width": img.width,
                "height": img.height,
                "cell": info.cell.index,
                "codec": info.cell.codec,
                "family": info.family,
                "fingerprint": info.fingerprint,
                "model": info.model,
                "model_domain": info.model_domain,
                "label": info.cell.label,
                "group": info.cell.group,
                "settings": info.cell.settings_json,
                "tables": ",".join(info.cell.tables),
                **{f: outcome.get(f) for f in METRIC_FIELDS},
                "swd_set": None if outcome.get("error") else swd_sets.get((ci, img.dataset)),
                "error": outcome.get("error") or None,
            }
        )
    frame = _results_frame(rows)
    failed = int(frame["error"].notna().sum())
    frame.attrs = {
        "units": len(rows),
        "computed": len(pending),
        "cached": len(rows) - len(pending),
        "failed": failed,
    }
    return frame


def _results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for column in ("width", "height", "cell", "bytes"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    for column in ("bpp", "cr", "psnr", "ssim", "ms_ssim", "haarpsi", "gmsd", "vif", "swd", "swd_set", "enc_ms",
                   "dec_ms"):  # fmt: skip
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in (
        "dataset",
        "image",
        "sha256",
        "codec",
        "family",
        "fingerprint",
        "model",
        "model_domain",
        "label",
        "group",
        "settings",
        "tables",
    ):
        frame[column] = frame[column].astype(str)
    frame["error"] = frame["error"].astype(object).where(frame["error"].notna(), None)
    return frame.sort_values(["dataset", "image", "cell"], kind="stable").reset_index(drop=True)


def _set_swd(infos, images, outcomes, cache_dir: Path) -> dict[tuple[int, str], float]:
    """SWD between each data set's originals and their reconstructions by each cell, over its good units.

    Cached under ``cache_dir/sets`` by the set of unit keys, so a fully cached rerun reads one small file per
    (cell, data set). NaN for a set whose descriptors cannot all be read (the set would silently shrink)."""
    groups: dict[tuple[int, str], list[int]] = collections.defaultdict(list)
    for (ci, ii), outcome in outcomes.items():
        if not outcome.get("error") and outcome.get("key"):
            groups[ci, images[ii].dataset].append(ii)
    originals: dict[int, np.ndarray] = {}
    values: dict[tuple[int, str], float] = {}
    for (ci, dataset), members in sorted(groups.items()):
        members = sorted(members)
        units = sorted(outcomes[ci, ii]["key"] for ii in members)
        set_key = hashlib.sha256(canonical_json({"format": CACHE_FORMAT, "swd_set": units}).encode()).hexdigest()
        set_path = cache_dir / "sets" / set_key[:2] / f"{set_key}.json"
        try:
            values[ci, dataset] = float(json.loads(set_path.read_text())["swd_set"])
            continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        pairs = []
        for ii in members:
            img = images[ii]
            if ii not in originals:
                path = perceptual.descriptors_path(img.path)
                stored = perceptual.load_descriptors(path)
                if stored is None or stored.shape[0] != perceptual.swd_levels(img.width, img.height):
                    stored = perceptual.cached_descriptors(np.asarray(open_image(img.path)), path)
                originals[ii] = stored
            entry, _ = _unit_paths(cache_dir, outcomes[ci, ii]["key"])
            reconstruction = perceptual.load_descriptors(perceptual.descriptors_path(entry))
            if reconstruction is None or reconstruction.shape != originals[ii].shape:
                log.warning("no SWD descriptors for %s on %s", infos[ci].cell.label, img.image)
                pairs = []
                break
            pairs.append((originals[ii], reconstruction))
        if not pairs:
            values[ci, dataset] = math.nan
            continue
        values[ci, dataset] = perceptual.swd_sets(*zip(*pairs))
        write_bytes_atomic(set_path, json.dumps({"swd_set": values[ci, dataset], "units": units}).encode())
    return values


def _write_samples(infos, images, outcomes, cache_dir: Path, samples_root: Path) -> None:
    for ii, img in enumerate(images):
        if not img.is_sample:
            continue
        folder = sample_folder(samples_root, img.dataset, img.image)
        _atomic_copy(img.path, folder / f"{ORIGINAL_SAMPLE_NAME}.png")
        for ci, info in enumerate(infos):
            if info.error or outcomes[ci, ii].get("error"):
                continue
            _, recon_path = _unit_paths(cache_dir, outcomes[ci, ii]["key"])
            if recon_path.exists():
                _atomic_copy(recon_path, folder / f"{info.cell.slug}.png")


# ---------------------------------------------------------------- a folder of images


def evaluate_folder(
    images_dir: str | Path,
    cells: Sequence[Cell] | Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    dataset: str | None = None,
    cache_dir: str | Path | None = None,
    map_fn: Callable[[Callable, list], list] | None = None,
    workers: int | None = None,
    samples_dir: str | Path | None = None,
    sample_images: int = 1,
    recursive: bool = False,
    max_images: int | None = None,
    max_side: int | None = None,
    formats=DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Run the grid on every image file in a folder and write ``out_dir/results.parquet``.

    ``cells`` is a list of :class:`Cell` or a grid spec. Images are decoded with
    :func:`gencomp.data.images.open_image`, identified by their path relative to the folder (no suffix) and by
    the SHA-256 of the file. Files it rejects are skipped and listed in ``out_dir/rejected.csv``
    (path, reason, message). The cache defaults to ``out_dir/cache``. Returns the path of the Parquet file.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise NotADirectoryError(f"image folder {images_dir} does not exist")
    cell_list = [c for c in cells] if all(isinstance(c, Cell) for c in cells) else expand_grid(cells)  # type: ignore[arg-type]
    rejected: list[dict[str, str]] = []
    name = dataset or images_dir.resolve().name
    frame = run_grid(
        cell_list,
        {
            name: folder_images(
                images_dir, recursive=recursive, max_images=max_images, max_side=max_side, formats=formats,
                max_pixels=max_pixels, rejected=rejected,
            )
        },
        cache_dir=Path(cache_dir) if cache_dir is not None else out_dir / "cache",
        map_fn=map_fn,
        samples_dir=samples_dir,
        sample_images=sample_images,
        workers=workers,
    )
    rejected_path = out_dir / "rejected.csv"
    if rejected:
        write_bytes_atomic(rejected_path, pd.DataFrame(rejected).to_csv(index=False).encode())
    elif rejected_path.exists():
        rejected_path.unlink()
    if frame.empty:
        log.warning("no usable images in %s", images_dir)
    stats = frame.attrs
    log.info("evaluated %s: %s", images_dir, stats)
    return write_results(frame, out_dir / "results.parquet")
