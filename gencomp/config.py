"""params.yaml -> typed, validated settings. The one place that reads and checks parameters.

Every section is a pydantic model that forbids unknown keys, so a typo in params.yaml (or in
``dvc exp run -S``) fails at once with the path of the bad key instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoSite(_Section):
    extra_photo_dirs: list[str] = []
    max_extra_photos: int | None = 0


class ScrapeParams(_Section):
    out: str = "data/raw"
    start_urls: list[str] = []
    demo_site: DemoSite = DemoSite()
    allowed_domains: list[str] = []
    depth: int = Field(3, ge=0)
    max_images: int = Field(0, ge=0)
    min_width: int = Field(32, ge=1)
    min_height: int = Field(32, ge=1)
    formats: list[str] = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"]
    concurrency_per_domain: int = Field(4, ge=1)
    download_delay: float = Field(0.0, ge=0)
    user_agent: str = "gencomp-scraper/0.1 (+https://github.com/gencomp/gencomp)"
    timeout_s: float = Field(20, gt=0)
    max_bytes: int = Field(50_000_000, gt=0)
    max_pixels: int = Field(64_000_000, gt=0)
    workers: int = Field(2, ge=1)
    processes: int = Field(1, ge=1)  # > 1: that many spider processes sharing one scrapy-redis queue
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0; required when processes > 1

    @model_validator(mode="after")
    def _scale_out(self) -> ScrapeParams:
        if self.processes > 1 and not self.redis_url:
            raise ValueError("processes > 1 needs redis_url (the shared scrapy-redis queue)")
        if self.redis_url and self.uses_demo_site:
            raise ValueError("redis_url needs real start_urls (the demo site lives in one process)")
        return self

    @field_validator("start_urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"start URL {url!r} is not http(s)")
        return urls

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
    verify_threshold: float = Field(0.85, ge=-1.0, le=1.0)  # score an edge needs to join (verified)
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
