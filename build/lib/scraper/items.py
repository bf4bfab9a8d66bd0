"""Items that flow from the spider through the pipelines.

``FetchedImage`` carries a downloaded body to validation; ``ManifestRow`` is one manifest row (the columns of
:data:`scraper.manifest.MANIFEST_SCHEMA`). The spider yields a ``ManifestRow`` directly for everything that
produced no body (HTTP errors, robots, timeouts ...); validation turns each ``FetchedImage`` into one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from scraper.manifest import utc_now


@dataclass
class FetchedImage:
    url: str  # canonical URL as requested (before redirects)
    page_url: str
    body: bytes
    http_status: int
    content_type: str
    etag: str
    last_modified: str
    license: str
    fetched_at: datetime = field(default_factory=utc_now)


@dataclass
class ManifestRow:
    url: str
    status: str
    page_url: str = ""
    kind: str = "image"
    error: str = ""
    http_status: int = 0
    sha256: str = ""
    path: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    frames: int = 0
    bytes: int = 0
    content_type: str = ""
    fetched_at: datetime = field(default_factory=utc_now)
    etag: str = ""
    last_modified: str = ""
    license: str = ""
    crawl_id: str = ""

    def as_dict(self) -> dict:
        return asdict(self)
