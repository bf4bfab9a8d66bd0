"""params.yaml -> typed, validated settings. The one place that reads and checks parameters.

Every section is a pydantic model that forbids unknown keys, so a typo in params.yaml (or in
``dvc exp run -S``) fails at once with the path of the bad key instead of being silently ignored.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    hash: Literal["phash", "dhash"] = "phash"
    threshold: int = Field(8, ge=0, le=32)
    workers: int = Field(2, ge=1)
    contact_sheet_clusters: int = Field(12, ge=0)


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
        if set(split) != {"train", "val", "test"}:
            raise ValueError(f"split needs exactly train, val and test; got {sorted(split)}")
        if any(v < 0 for v in split.values()) or abs(sum(split.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1; got {split}")
        return split


class TrainParams(_Section):
    out: str
    preset: str = "demo"
    overrides: dict[str, Any] = {}


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


class EvaluateParams(_Section):
    out: str = "results"
    runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    workers: int = Field(2, ge=1)
    datasets: list[EvalDataset]
    sample_images: int = Field(1, ge=0)
    grid: list[GridEntry]

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique; got {names}")
        if self.runner == "dask" and not self.dask_address:
            raise ValueError("runner 'dask' needs dask_address (e.g. tcp://127.0.0.1:8786)")
        return self

    def grid_spec(self) -> list[dict[str, Any]]:
        """The grid as the plain list of dicts that gencomp.evaluate.expand_grid takes."""
        return [entry.model_dump(exclude_none=True) for entry in self.grid]


class ReportParams(_Section):
    out: str = "reports"
    dataset: str = "test"
    reference_points: bool = True


class DeploymentsParams(_Section):
    """Prefect deployments served by `python -m flows.deployments` (not a DVC stage)."""

    rescrape_cron: str = "0 3 * * 1"  # Mondays 03:00
    timezone: str = "UTC"
    train_presets: list[str] = ["demo", "cpu-full", "gpu"]


class Params(_Section):
    scrape: ScrapeParams = ScrapeParams()
    dedupe: DedupeParams = DedupeParams()
    shard: ShardParams = ShardParams()
    train_gan: TrainParams = TrainParams(out="models/gan")
    train_vaegan: TrainParams = TrainParams(out="models/vaegan")
    evaluate: EvaluateParams
    report: ReportParams = ReportParams()
    deployments: DeploymentsParams = DeploymentsParams()

    @model_validator(mode="after")
    def _report_dataset_exists(self) -> Params:
        names = [d.name for d in self.evaluate.datasets]
        if self.report.dataset not in names:
            raise ValueError(f"report.dataset {self.report.dataset!r} is not one of evaluate.datasets {names}")
        return self


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml. Raises :class:`ParamsError` with every problem listed."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root or pass --params)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: invalid parameters:\n{_format_errors(exc)}") from None
