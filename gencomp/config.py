"""params.yaml -> typed, validated settings. The one place that reads and checks parameters.

Every section is a pydantic model that forbids unknown keys and takes strict types (``threshold: true`` is not
the integer 1), so a typo in params.yaml (or in ``dvc exp run -S``) fails at once with the path of the bad key
instead of being silently ignored or failing when its stage runs. The free-form parts are checked against the
truth they name: grid ``settings`` / ``sweep`` against each codec's declared parameters (the codec registry),
training ``preset`` / ``overrides`` against the preset tables (:func:`gencomp.train.presets.resolve_preset`).
Every stage validates the whole file before it does any work, so a typo anywhere stops the first stage that runs.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and the key."""


class KeyPathError(ValueError):
    """Raised inside a validator about a key below the field being validated: ``path`` extends the error's
    location (e.g. ``("settings", "qualty")`` below ``evaluate.grid[3]``)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DemoSite(_Section):
    extra_photo_dirs: list[str] = Field(
        [], description="Local folders whose photos the demo site also publishes (searched recursively)."
    )
    max_extra_photos: int | None = Field(
        0, ge=0, description="How many of the extra photos to publish (0: none of them; null: all)."
    )


class ScrapeParams(_Section):
    """The crawl's settings: the one definition of every default, used by params.yaml, `gencomp scrape`,
    `python -m scraper.crawl` and the Scrapy settings (scraper/settings.py)."""

    # Every format gencomp.data.images decodes (tests/test_scraper_settings.py keeps the two in step; config
    # does not import the imaging module).
    IMAGE_FORMATS: ClassVar[tuple[str, ...]] = ("AVIF", "BMP", "GIF", "JPEG", "JXL", "MPO", "PNG", "TIFF", "WEBP")
    MAX_DEPTH: ClassVar[int] = 100

    out: str = Field("data/raw", description="Output folder (images/ and manifest.parquet).")
    start_urls: list[str] = Field(
        [], description="Pages to start from (http/https). Empty: crawl the embedded demo site."
    )
    demo_site: DemoSite = DemoSite()
    allowed_domains: list[str] = Field(
        [],
        description="Extra origins the crawl may fetch from, besides the start URLs' own: 'example.com' allows "
        "that host and its subdomains over http/https on the default ports; 'example.com:8080' or "
        "'https://example.com' narrow it to that port or scheme.",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Fetch from hosts that resolve to private, loopback, link-local, multicast or reserved "
        "addresses (refused by default: a page must not steer the crawl to internal services).",
    )
    allowed_networks: list[str] = Field(
        [],
        description="Non-public networks (CIDR, e.g. 127.0.0.1/32) the crawl may connect to although "
        "allow_private_addresses is off.",
    )
    depth: int = Field(3, ge=0, le=MAX_DEPTH, description="Page levels to follow (0: the start pages only).")
    max_images: int = Field(0, ge=0, description="Stop after storing this many images (0: no limit).")
    min_width: int = Field(32, ge=1, description="Smallest image width kept, pixels (as displayed).")
    min_height: int = Field(32, ge=1, description="Smallest image height kept, pixels (as displayed).")
    formats: list[str] = Field(list(IMAGE_FORMATS), min_length=1, description="Image formats kept.")
    concurrency_per_domain: int = Field(4, ge=1, le=64, description="Parallel requests per domain.")
    download_delay: float = Field(
        0.25, ge=0, le=60, description="Seconds between requests to one domain (AutoThrottle's floor)."
    )
    user_agent: str = Field(
        "gencomp-research-crawler/0.1 (+https://github.com/gencomp/gencomp; image compression research)",
        min_length=1,
        description="User-Agent header (robots.txt rules for it are obeyed).",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Per-download timeout, seconds.")
    retries: int = Field(3, ge=0, le=10, description="Retries on 429/5xx/timeouts, with backoff.")
    max_bytes: int = Field(50_000_000, gt=0, description="Byte cap per download.")
    max_pixels: int = Field(64_000_000, gt=0, description="Pixel cap per image (decompression bombs).")
    workers: int = Field(2, ge=1, le=256, description="Image validation processes.")
    processes: int = Field(
        1, ge=1, le=256, description="Spider processes; > 1 share one scrapy-redis queue at redis_url."
    )
    redis_url: str | None = Field(
        None, description="redis:// , rediss:// or unix:// URL of the shared queue (needed when processes > 1)."
    )

    @staticmethod
    def _url_parts(url: str, what: str) -> SplitResult:
        """The URL's parts; an http(s) scheme, a host and a valid port are required (the error says which)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{what} {url!r} is not http(s)")
        if not parts.hostname:
            raise ValueError(f"{what} {url!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError:
            raise ValueError(f"{what} {url!r} has an invalid port") from None
        return parts

    @model_validator(mode="after")
    def _scale_out(self) -> ScrapeParams:
        if self.processes > 1 and not self.redis_url:
            raise ValueError("processes > 1 needs redis_url (the shared scrapy-redis queue)")
        if self.redis_url and self.uses_demo_site:
            raise ValueError("redis_url needs real start_urls (the demo site lives in one process)")
        return self

    @field_validator("start_urls")
    @classmethod
    def _http_with_host(cls, urls: list[str]) -> list[str]:
        for url in urls:
            cls._url_parts(url, "start URL")
        return urls

    @field_validator("allowed_domains")
    @classmethod
    def _origin_entries(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            parts = cls._url_parts(entry if "://" in entry else f"http://{entry}", "allowed_domains entry")
            if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
                raise ValueError(f"allowed_domains entry {entry!r} must be [scheme://]host[:port], nothing else")
        return entries

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"allowed_networks entry {network!r} is not an address or CIDR network") from None
        return networks

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        upper = ["JPEG" if f.strip().upper() == "JPG" else f.strip().upper() for f in formats]
        unknown = sorted(set(upper) - set(cls.IMAGE_FORMATS))
        if unknown:
            raise ValueError(f"unknown image formats {unknown}; choose from {list(cls.IMAGE_FORMATS)}")
        return upper

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{url!r} is not a redis:// , rediss:// or unix:// URL")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError(f"{url!r} names no socket path")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{url!r} has no host")
        return url

    @property
    def uses_demo_site(self) -> bool:
        return not self.start_urls


class DedupeParams(_Section):
    out: str = "data/dedup"
    # verified: candidate hashes (whole, centred 92 % and 60 %, mirror-proof) within `threshold`, each edge
    # verified on thumbnails (gencomp.data.verify); hash: clusters of `hash` within `threshold`, unverified
    method: Literal["verified", "hash"] = "verified"
    hash: Literal["phash", "dhash"] = "phash"  # method: hash only
    threshold: int = Field(8, ge=0, le=16)  # Hamming bits: the candidate search (verified) or the clusters (hash)
    verify_threshold: float = Field(0.86, ge=-1.0, le=1.0)  # score an edge needs to join (verified)
    guard_threshold: float = Field(0.75, ge=-1.0, le=1.0)  # score against the representative, clusters of 3+
    workers: int = Field(2, ge=1)
    contact_sheet_clusters: int = Field(12, ge=0)
    contact_sheet_pairs: int = Field(8, ge=0)  # borderline verified pairs shown under the clusters


class ShardResize(_Section):
    max_short_side: int = Field(ge=16)
    quality: int = Field(90, ge=1, le=100)


class ShardParams(_Section):
    out: str = "data/shards"
    target_mb: float = Field(64, gt=0)
    row_group_rows: int = Field(100, ge=1)
    split: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
    salt: str = "gencomp"
    resize: ShardResize | None = None  # store every image as JPEG, short side capped (gencomp.data.shards)

    @field_validator("split")
    @classmethod
    def _fractions(cls, split: dict[str, float]) -> dict[str, float]:
        return check_split(split)


def check_split(split: dict[str, float]) -> dict[str, float]:
    """Train, val and test fractions (what the loader and the evaluation sets read), >= 0 and summing to 1."""
    if set(split) != {"train", "val", "test"}:
        raise ValueError(f"split needs exactly train, val and test; got {sorted(split)}")
    if any(v < 0 for v in split.values()) or abs(sum(split.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1; got {split}")
    return split


class TrainSettings(_Section):
    """A preset and overrides of one model kind's training; checked against the preset tables by :class:`Params`,
    which knows the kind."""

    preset: str = "demo"
    overrides: dict[str, Any] = {}

    def check(self, kind: str, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The resolved training settings, with ``fixed`` (settings the stage sets itself) applied on top of the
        overrides; KeyPathError names the preset or the override that is wrong."""
        from gencomp.train.presets import PresetError, resolve_preset

        try:
            return resolve_preset(kind, self.preset, {**self.overrides, **(fixed or {})})
        except PresetError as exc:
            if exc.key is None:
                raise KeyPathError(("preset",), str(exc)) from None
            where = ("overrides", exc.key) if exc.key in self.overrides else ("preset",)
            raise KeyPathError(where, str(exc)) from None


class TrainParams(TrainSettings):
    """One training stage on the scraped corpus (train_gan, train_vaegan)."""

    out: str


class DomainParams(_Section):
    """One narrow image domain (faces, aerial scenes, textures...): the fields of
    :class:`gencomp.data.domains.DomainSpec`, whose name is this entry's key under ``domains``. The defaults are
    DomainSpec's (tests/test_domain_settings.py keeps them equal); DomainSpec's own checks run on every entry."""

    folder: str = Field(description="Folder of the domain's images (read only; relative to the repository root).")
    crop_box: list[int] | None = Field(
        None, min_length=4, max_length=4, description="[left, top, right, bottom] pixels cut from every image."
    )
    center_crop: int | None = Field(None, ge=0, description="Side of a centred square crop (0: the largest square).")
    size: int | None = Field(None, ge=8, le=4096, description="Resize the (square) cut to size x size (Lanczos).")
    max_short_side: int | None = Field(None, ge=16, description="Only cap the short side (photos of every shape).")
    group_by: Literal["parent", "file"] = Field(
        "file", description="parent: a file's folder in MANIFEST.tsv is its group (faces: the person); file: none."
    )
    quality: int = Field(90, ge=1, le=100, description="JPEG quality of the stored images.")
    split: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
    salt: str = "gencomp"
    terms: str = Field("", description="Terms of use of the images, carried into the shards and the models.")

    @field_validator("split")
    @classmethod
    def _fractions(cls, split: dict[str, float]) -> dict[str, float]:
        return check_split(split)

    def spec(self, name: str):
        """The library's DomainSpec of this entry (raises its DomainError on a setting it refuses)."""
        from gencomp.data.domains import DomainSpec  # lazy: the domain module pulls in pandas and Pillow

        fields = self.model_dump()
        fields["crop_box"] = tuple(self.crop_box) if self.crop_box is not None else None
        return DomainSpec(name=name, **fields)

    @property
    def side(self) -> int | None:
        """The side of every image of the domain when they are all one square size (what a domain model's tile
        or crop must be); None when the preparation leaves sizes free."""
        if self.size is not None:
            return self.size
        if self.center_crop:
            return self.center_crop
        if self.crop_box is not None and self.max_short_side is None:
            left, top, right, bottom = self.crop_box
            if right - left == bottom - top:
                return right - left
        return None


class DomainsParams(_Section):
    """The narrow domains: one entry per domain (any name but ``out`` and ``enabled``), built into
    ``<out>/<name>`` only when listed in ``enabled``; a domain not enabled is never read."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, DomainParams] = Field(init=False)

    out: str = Field("data/domains", description="Parent folder of the domain shard sets: <out>/<name>.")
    enabled: list[str] = Field(
        [], description="Domains the pipeline builds (and trains on, see train_domains); their folders must exist."
    )

    @model_validator(mode="after")
    def _check(self) -> DomainsParams:
        from gencomp.data.domains import DomainError

        for name, entry in self.entries.items():
            try:
                entry.spec(name)
            except DomainError as exc:
                raise KeyPathError((name,), str(exc)) from None
        for i, name in enumerate(self.enabled):
            if name not in self.entries:
                raise KeyPathError(("enabled", i), f"no domain {name!r}; domains: {sorted(self.entries) or 'none'}")
            if self.enabled.index(name) != i:
                raise KeyPathError(("enabled", i), f"domain {name!r} is listed twice")
        return self

    @property
    def entries(self) -> dict[str, DomainParams]:
        return dict(self.__pydantic_extra__ or {})

    def shards_dir(self, name: str) -> Path:
        """Where the pipeline writes domain ``name``'s shard set."""
        return Path(self.out) / name


class DomainTraining(_Section):
    """Training on one domain: a preset and overrides per model kind. The stage sets the GAN's ``tile`` and the
    VAE-GAN's ``crop`` to the domain's side itself, so the overrides may not."""

    gan: TrainSettings = TrainSettings(preset="finetune")
    vaegan: TrainSettings = TrainSettings(preset="finetune")


class TrainDomainsParams(_Section):
    """Models trained on the enabled domains, one per (kind in ``kinds``) x (domain), each in
    ``<out>/<kind>-<domain>``; an entry per enabled domain gives its presets (e.g. a zoo model to start from)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, DomainTraining] = Field(init=False)
    SIZE_KEYS: ClassVar[dict[str, str]] = {"gan": "tile", "vaegan": "crop"}

    out: str = Field("models/domains", description="Parent folder of the domain models: <out>/<kind>-<domain>.")
    kinds: list[Literal["gan", "vaegan"]] = Field(
        ["gan", "vaegan"], description="Model kinds trained on every enabled domain ([]: none, evaluation only)."
    )

    @property
    def entries(self) -> dict[str, DomainTraining]:
        return dict(self.__pydantic_extra__ or {})

    def model_dir(self, kind: str, domain: str) -> Path:
        return Path(self.out) / f"{kind}-{domain}"


class EvalDataset(_Section):
    name: str
    shards: str | None = None  # a shards directory (with split) ...
    split: Literal["train", "val", "test"] = "test"
    dir: str | None = None  # ... or a folder of images
    max_images: int | None = Field(None, ge=1)
    max_side: int | None = Field(None, ge=16)  # downscale larger images (demo speed); None keeps full size

    @model_validator(mode="after")
    def _one_source(self) -> EvalDataset:
        if (self.shards is None) == (self.dir is None):
            raise ValueError(f"dataset {self.name!r} needs exactly one of 'shards' or 'dir'")
        return self


class GridEntry(_Section):
    codec: str
    settings: dict[str, Any] = {}
    sweep: dict[str, list[Any]] | None = None
    label: str | None = None
    group: str | None = None  # cells of one group form one RD curve (e.g. the VAE-GAN channel rows)
    tables: list[str] = []

    @model_validator(mode="after")
    def _codec_settings(self) -> GridEntry:
        check_codec_settings(self.codec, self.settings, self.sweep or {})
        return self


def check_codec_settings(codec: str, settings: dict[str, Any], sweep: dict[str, list[Any]]) -> None:
    """Check a grid entry against the codec registry: the codec exists, every key is one of its declared
    parameters with a value of the declared type and choices, and every cell the entry expands to passes the
    codec's own checks. Where a codec runs (``device``) is checked where it runs, not here."""
    from gencomp.codecs import REGISTRY  # lazy: the generative codecs pull in torch
    from gencomp.codecs.base import _coerce as coerce_setting  # the check Codec.__init__ runs per setting

    try:
        cls = REGISTRY.get(codec)
    except KeyError as exc:
        raise KeyPathError(("codec",), str(exc.args[0])) from None
    declared = {p.name: p for p in cls.params}
    values = [(("settings", k), [v]) for k, v in settings.items()] + [(("sweep", k), vs) for k, vs in sweep.items()]
    for path, candidates in values:
        if path[1] not in declared:
            raise KeyPathError(path, f"codec {codec!r} has no setting {path[1]!r}; it takes {sorted(declared)}")
        for i, value in enumerate(candidates):
            try:
                coerce_setting(codec, declared[path[1]], value)
            except ValueError as exc:
                raise KeyPathError(path + ((i,) if path[0] == "sweep" else ()), str(exc)) from None
    keys = sorted(sweep)
    for combo in itertools.product(*(sweep[k] for k in keys)):
        cell = {**settings, **dict(zip(keys, combo))}
        if "device" in declared:
            cell["device"] = "cpu"
        try:
            cls(**cell)
        except (ValueError, TypeError) as exc:
            raise KeyPathError(("settings",), str(exc)) from None


def _expand(grid: list[GridEntry]) -> None:
    """What only the whole grid can get wrong (two cells with one label, a key both fixed and swept)."""
    from gencomp.evaluate import expand_grid  # lazy: pandas

    try:
        expand_grid([entry.model_dump(exclude_none=True) for entry in grid])
    except ValueError as exc:
        raise KeyPathError(("grid",), str(exc)) from None


class EvaluateParams(_Section):
    out: str = "results"
    runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    workers: int = Field(2, ge=1)
    datasets: list[EvalDataset]
    sample_images: int = Field(1, ge=0)
    # false: a failed (cell, image) unit fails the stage (its row is still recorded in results.parquet)
    allow_failures: bool = False
    grid: list[GridEntry]

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique; got {names}")
        if self.runner == "dask" and not self.dask_address:
            raise ValueError("runner 'dask' needs dask_address (e.g. tcp://127.0.0.1:8786)")
        _expand(self.grid)
        return self

    def grid_spec(self) -> list[dict[str, Any]]:
        """The grid as the plain list of dicts that gencomp.evaluate.expand_grid takes."""
        return [entry.model_dump(exclude_none=True) for entry in self.grid]


class GridFile(_Section):
    """A grid file of ``gencomp eval --grid``: the list of params.yaml ``evaluate.grid``, or a mapping with
    ``grid`` and ``allow_failures``."""

    allow_failures: bool = False
    grid: list[GridEntry]

    @model_validator(mode="after")
    def _check(self) -> GridFile:
        _expand(self.grid)
        return self

    def grid_spec(self) -> list[dict[str, Any]]:
        return [entry.model_dump(exclude_none=True) for entry in self.grid]


class ReportParams(_Section):
    out: str = "reports"
    dataset: str = "test"
    reference_points: bool = True


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_CRON_NAMES = {3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
               4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
_CRON_ITEM = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


def check_cron(expr: str) -> str:
    """A standard five-field cron expression (numbers, names, ranges, lists, steps), or ValueError naming the
    field that is wrong."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for n, (text, (name, low, high)) in enumerate(zip(fields, _CRON_FIELDS)):
        names = _CRON_NAMES.get(n, ())
        for item in text.split(","):
            match = _CRON_ITEM.match(item.lower())
            bounds = [match.group(k) for k in (2, 3)] if match else ["?"]
            values = [names.index(v) + (1 if n == 3 else 0) if v in names else int(v) if v.isdigit() else -1
                      for v in bounds if v is not None]
            if not match or any(not low <= v <= high for v in values) or match.group(4) == "0":
                raise ValueError(f"cron {expr!r}: {item!r} is not a valid {name} ({low}-{high})")
    return expr


class DeploymentsParams(_Section):
    """Prefect deployments served by `python -m flows.deployments` (not a DVC stage)."""

    rescrape_cron: str = "0 3 * * 1"  # Mondays 03:00
    timezone: str = "UTC"
    train_presets: list[str] = ["demo", "cpu-full", "gpu"]

    @field_validator("rescrape_cron")
    @classmethod
    def _cron(cls, expr: str) -> str:
        return check_cron(expr)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r} (an IANA name such as UTC or Europe/Paris)") from None
        return name

    @field_validator("train_presets")
    @classmethod
    def _presets(cls, names: list[str]) -> list[str]:
        from gencomp.train.presets import PRESETS

        for i, name in enumerate(names):
            for kind, table in PRESETS.items():
                if name not in table:
                    raise KeyPathError((i,), f"no {kind} preset {name!r}; presets: {', '.join(table)}")
        return names


class Params(_Section):
    scrape: ScrapeParams = ScrapeParams()
    dedupe: DedupeParams = DedupeParams()
    shard: ShardParams = ShardParams()
    domains: DomainsParams = DomainsParams()
    train_gan: TrainParams = TrainParams(out="models/gan")
    train_vaegan: TrainParams = TrainParams(out="models/vaegan")
    train_domains: TrainDomainsParams = TrainDomainsParams()
    evaluate: EvaluateParams
    report: ReportParams = ReportParams()
    deployments: DeploymentsParams = DeploymentsParams()

    @model_validator(mode="after")
    def _report_dataset_exists(self) -> Params:
        names = [d.name for d in self.evaluate.datasets]
        if self.report.dataset not in names:
            raise ValueError(f"report.dataset {self.report.dataset!r} is not one of evaluate.datasets {names}")
        return self

    @model_validator(mode="after")
    def _training_presets(self) -> Params:
        for kind in ("gan", "vaegan"):
            try:
                getattr(self, f"train_{kind}").check(kind)
            except KeyPathError as exc:
                raise KeyPathError((f"train_{kind}", *exc.path), str(exc)) from None
        return self

    @model_validator(mode="after")
    def _domain_training(self) -> Params:
        unknown = sorted(set(self.train_domains.entries) - set(self.domains.entries))
        if unknown:
            raise KeyPathError(("train_domains", unknown[0]),
                               f"no domain {unknown[0]!r} under domains; domains: {sorted(self.domains.entries)}")
        if self.train_domains.kinds:
            for domain in self.domains.enabled:
                for kind in self.train_domains.kinds:
                    self.domain_training(kind, domain)  # raises naming the key
        return self

    @model_validator(mode="after")
    def _domain_datasets(self) -> Params:
        """An evaluation set inside domains.out is a domain the pipeline builds, so it must be enabled."""
        root = Path(self.domains.out)
        for i, dataset in enumerate(self.evaluate.datasets):
            if dataset.shards is None:
                continue
            path = Path(dataset.shards)
            if path.parent == root and path.name not in self.domains.enabled:
                raise KeyPathError(("evaluate", "datasets", i, "shards"),
                                   f"{dataset.shards} is built only for a domain in domains.enabled "
                                   f"({self.domains.enabled or 'none'}); add {path.name!r} there")
        return self

    def dataset_domains(self) -> dict[str, str]:
        """The domain of each evaluation data set the settings make known (for the report's cross-domain table):
        a domain's shard set (inside domains.out) is that domain, the scraped corpus's shards are photos. Other
        data sets go by their name."""
        out: dict[str, str] = {}
        for dataset in self.evaluate.datasets:
            if dataset.shards is None:
                continue
            path = Path(dataset.shards)
            if path.parent == Path(self.domains.out):
                out[dataset.name] = path.name
            elif path == Path(self.shard.out):
                out[dataset.name] = "photos"
        return out

    def domain_training(self, kind: str, domain: str) -> tuple[str, dict[str, Any]]:
        """(preset, overrides) of the ``kind`` model trained on ``domain``: the domain's entry under
        train_domains, with the tile (GAN) or crop (VAE-GAN) set to the domain's side. Raises KeyPathError
        naming the setting that prevents it."""
        entries = self.train_domains.entries
        if domain not in entries:
            raise KeyPathError(("train_domains", domain),
                               f"domain {domain!r} is enabled and trains {self.train_domains.kinds}: give its "
                               f"presets here, e.g. {{gan: {{preset: finetune}}, vaegan: {{preset: finetune}}}} "
                               "(or set train_domains.kinds: [])")
        settings: TrainSettings = getattr(entries[domain], kind)
        where = ("train_domains", domain, kind)
        size_key = TrainDomainsParams.SIZE_KEYS[kind]
        if size_key in settings.overrides:
            raise KeyPathError((*where, "overrides", size_key),
                               f"{size_key} is the domain's side, set from domains.{domain}; remove it here")
        side = self.domains.entries[domain].side
        if side is None:
            raise KeyPathError(("domains", domain, "size"),
                               f"training on domain {domain!r} needs square images of one size (the {kind} "
                               f"{size_key}); set size, or a non-zero center_crop")
        if kind == "gan" and side & (side - 1):
            raise KeyPathError(("domains", domain, "size"),
                               f"a GAN's tile is the domain's side and must be a power of two, got {side}")
        try:
            settings.check(kind, {size_key: side})
        except KeyPathError as exc:
            raise KeyPathError((*where, *exc.path), str(exc)) from None
        return settings.preset, {**settings.overrides, size_key: side}


def key_path(loc: tuple[str | int, ...]) -> str:
    """``("evaluate", "grid", 3, "settings", "qualty")`` -> ``evaluate.grid[3].settings.qualty``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_errors(exc: ValidationError, root: tuple[str | int, ...] = ()) -> str:
    lines = []
    for err in exc.errors():
        loc, msg = root + tuple(err["loc"]), err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyPathError):
            loc, msg = loc + cause.path, str(cause)
        lines.append(f"  {key_path(loc) or '(top level)'}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None


def _validated(model: type[BaseModel], raw: Any, path: Path, what: str):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: invalid {what}:\n{_format_errors(exc)}") from None


def load_grid(path: str | Path) -> GridFile:
    """Read and validate a grid file (``gencomp eval --grid``); raises :class:`ParamsError` naming the key."""
    path = Path(path)
    raw = _read_yaml(path)
    if isinstance(raw, list):
        raw = {"grid": raw}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a list of grid entries like params.yaml evaluate.grid")
    return _validated(GridFile, raw, path, "grid")


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml. Raises :class:`ParamsError` with every problem listed."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    return _validated(Params, raw, path, "parameters")
