"""The image spider: follows pages within allowed_domains up to a depth and requests every image it finds.

Each image URL (canonical form) is requested once; everything that happens to it ends as one manifest row:
a body goes to validation (``FetchedImage``), anything else becomes a ``ManifestRow`` here (HTTP error, robots,
timeout, offsite redirect, byte cap ...). Rescrapes send conditional requests from the previous manifest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Request, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as twisted_error
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from gencomp.config import ScrapeParams
from scraper.extract import canonical_url, extract_images, extract_links, is_http_url, license_hint
from scraper.items import FetchedImage, ManifestRow
from scraper.manifest import PreviousImage, known_hashes, previous_images, read_manifest
from scraper.middlewares import BlockedAddress, BlockedOrigin, MaxImagesReached, OffsiteRedirect
from scraper.netguard import OriginPolicy
from scraper.shared_state import LocalCrawlState, RedisCrawlState, crawl_state_from_settings

IMAGE_PRIORITY = 10  # images of pages already seen go before further pages (see settings.py)
GONE_STATUSES = frozenset({404, 410})


def _header(response: Response, name: str) -> str:
    value = response.headers.get(name)
    return value.decode("latin-1").strip() if value else ""


def http_status_code(status: int) -> str:
    """Manifest status for a non-2xx response: ``http_5xx`` for server errors, else ``http_<code>``."""
    return "http_5xx" if 500 <= status <= 599 else f"http_{status}"


def classify_failure(exc: BaseException) -> tuple[str, str, int]:
    """(status, error message, http_status) for an errback's exception."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, HttpError):
        code = exc.response.status
        return http_status_code(code), f"HTTP {code}", code
    if isinstance(exc, OffsiteRedirect):
        return "offsite_redirect", message, 0
    if isinstance(exc, BlockedAddress):
        return "blocked_private_address", message, 0
    if isinstance(exc, BlockedOrigin):
        return "blocked_origin", message, 0
    if isinstance(exc, IgnoreRequest):
        lowered = message.lower()
        if "robots.txt" in lowered:
            return "robots", message, 0
        if "max redirections" in lowered:
            return "too_many_redirects", message, 0
        if "offsite" in lowered:
            return "offsite", message, 0
        # HttpCompressionMiddleware's cap on the decompressed body (a gzip bomb): older Scrapy said "max size",
        # current Scrapy names DOWNLOAD_MAXSIZE and chains its _DecompressionMaxSizeExceeded
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
        if "max size" in lowered or "download_maxsize" in lowered or cause == "_DecompressionMaxSizeExceeded":
            return "too_large_bytes", message, 0
        return "ignored", message, 0
    if isinstance(exc, (DownloadTimeoutError, twisted_error.TimeoutError)):
        return "timeout", message, 0
    if isinstance(exc, DownloadCancelledError):
        return ("too_large_bytes" if "max size" in message else "download_error"), message, 0
    if isinstance(exc, CancelledError):
        return "download_error", f"download cancelled ({message})", 0
    if isinstance(
        exc,
        (
            DownloadConnectionRefusedError,
            CannotResolveHostError,
            twisted_error.ConnectError,
            twisted_error.DNSLookupError,
            ConnectionError,
        ),
    ):
        return "connection_error", message, 0
    if isinstance(exc, ResponseDataLossError):
        return "data_loss", message, 0
    if isinstance(exc, DownloadFailedError):
        return "download_error", message, 0
    return "download_error", f"{type(exc).__name__}: {message}", 0


class ImagesSpider(scrapy.Spider):
    """Crawl ``start_urls`` to ``max_depth`` page levels and request every image found.

    The crawl fetches from the start URLs' origins (scheme, host, port) and the ``allowed_domains`` rules only
    (:class:`scraper.netguard.OriginPolicy`): an image elsewhere is recorded as ``offsite`` and never requested,
    a page link elsewhere is not followed. Depth 0 means the start pages only; images on a page of any depth
    are always fetched.

    Which pages and image URLs are taken lives in ``self.state`` (:mod:`scraper.shared_state`): this
    process's memory, or Redis when several processes crawl together. Requests carry ``dont_filter`` because
    the spider dedupes by canonical URL itself, before a request exists: that is what writes the
    ``duplicate_url`` rows, and it leaves retries and redirect chains (loops included) to their middlewares.
    """

    name = "images"

    def __init__(
        self,
        *,
        start_urls: Iterable[str],
        allowed_domains: Iterable[str] = (),
        max_depth: int = ScrapeParams.model_fields["depth"].default,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # `scrapy crawl images -a start_urls=a,b -a max_depth=1` passes strings.
        if isinstance(start_urls, str):
            start_urls = start_urls.replace(",", " ").split()
        if isinstance(allowed_domains, str):
            allowed_domains = allowed_domains.replace(",", " ").split()
        max_depth = int(max_depth)
        urls = [u.strip() for u in start_urls if u and u.strip()]
        if not urls:
            raise ValueError("at least one start URL is required")
        bad = [u for u in urls if not is_http_url(u)]
        if bad:
            raise ValueError(f"start URLs must be absolute http(s) URLs: {bad}")
        if not 0 <= max_depth <= ScrapeParams.MAX_DEPTH:
            raise ValueError(f"max_depth must be in 0..{ScrapeParams.MAX_DEPTH}, got {max_depth}")
        self.start_urls = [canonical_url(u) for u in urls]
        self.origins = OriginPolicy(self.start_urls, [d for d in allowed_domains if d and d.strip()])
        # Scrapy's own OffsiteMiddleware is off (settings.py); scraper.middlewares.OriginGuardMiddleware
        # enforces self.origins on every request instead.
        self.allowed_domains = sorted({urlsplit(u).hostname for u in self.start_urls})
        self.max_depth = max_depth
        self.out_dir = Path(".")
        self.previous: dict[str, PreviousImage] = {}
        self.known_hashes: set[str] = set()
        self.previous_table = None
        self.state: LocalCrawlState | RedisCrawlState = LocalCrawlState()
        self.stop_scheduling = False  # set when --max-images is reached
        self.default_maxsize = 0
        self.pages_crawled = 0  # pages that answered 2xx (a crawl where none did has failed)

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        out_dir = crawler.settings.get("GENCOMP_OUT_DIR")
        if not out_dir:
            raise ValueError("GENCOMP_OUT_DIR is not set")
        spider.out_dir = Path(out_dir)
        spider.previous_table = read_manifest(spider.out_dir)
        spider.previous = previous_images(spider.previous_table)
        spider.known_hashes = known_hashes(spider.previous_table)
        spider.default_maxsize = crawler.settings.getint("DOWNLOAD_MAXSIZE")
        spider.state = crawl_state_from_settings(crawler.settings)
        crawler.signals.connect(spider._count_bytes, signal=signals.bytes_received)
        return spider

    def _count_bytes(self, data: bytes, request: Request, spider=None) -> None:
        # The HTTP/1.1 handler aborts a body without Content-Length that streams past DOWNLOAD_MAXSIZE with a
        # bare DownloadCancelledError; the byte count lets the errback name the reason.
        request.meta["gencomp_bytes_received"] = request.meta.get("gencomp_bytes_received", 0) + len(data)

    def _classify(self, failure: Failure, request: Request | None) -> tuple[str, str, int]:
        status, message, http_status = classify_failure(failure.value)
        if request is not None and isinstance(failure.value, DownloadCancelledError) and status != "too_large_bytes":
            cap = request.meta.get("download_maxsize", self.default_maxsize)
            received = request.meta.get("gencomp_bytes_received", 0)
            if cap and received > cap:
                status, message = "too_large_bytes", f"received {received} bytes, over the byte cap of {cap}"
        return status, message, http_status

    # -- requests ---------------------------------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Request]:
        for url in self.start_urls:
            # In a distributed crawl every process runs this: the claim makes exactly one of them enqueue it.
            if self.state.claim_page(url):
                yield self._page_request(url, depth=0, page_url="")

    def _page_request(self, url: str, *, depth: int, page_url: str) -> Request:
        return Request(
            url,
            callback=self.parse_page,
            errback=self.on_page_error,
            meta={"page_depth": depth, "page_url": page_url},
            dont_filter=True,  # the spider dedupes by canonical URL itself (state.claim_page)
        )

    def _image_requests(self, url: str, *, page_url: str, license: str) -> Iterator[Request | ManifestRow]:
        first_page = self.state.claim_image(url, page_url)
        if first_page is not None:
            yield ManifestRow(
                url=url, status="duplicate_url", page_url=page_url, license=license,
                error=f"already requested from {first_page or 'the start URLs'}",
            )
            return
        if not self.origins.allows(url):
            yield ManifestRow(
                url=url, status="offsite", page_url=page_url, license=license,
                error=f"outside the allowed origins ({self.origins.describe()})",
            )
            return
        if self.stop_scheduling:
            return
        headers = {}
        previous = self.previous.get(url)
        if previous is not None and previous.stored and (self.out_dir / previous.path).exists():
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        yield Request(
            url,
            callback=self.parse_image,
            errback=self.on_image_error,
            headers=headers,
            priority=IMAGE_PRIORITY,
            meta={"image_url": url, "page_url": page_url, "license": license},
            dont_filter=True,  # unique by construction (state.claim_image); redirects keep this flag
        )

    # -- callbacks --------------------------------------------------------------------------------------------

    def parse_page(self, response: Response):
        depth = response.meta.get("page_depth", 0)
        self.pages_crawled += 1
        if not isinstance(response, TextResponse):
            if _header(response, "Content-Type").lower().startswith("image/"):
                # A start URL (or link) that is itself an image.
                url = canonical_url(response.request.url)
                if self.state.claim_image(url, response.meta.get("page_url", "")) is None:
                    yield self._fetched(response, url, response.meta.get("page_url", ""), "")
            return
        html = response.text
        license = license_hint(html, response.url)
        for candidate in extract_images(html, response.url):
            yield from self._image_requests(candidate.url, page_url=response.url, license=license)
        if depth >= self.max_depth:
            return
        for link in extract_links(html, response.url):
            if not self.origins.allows(link) or not self.state.claim_page(link):
                continue
            yield self._page_request(link, depth=depth + 1, page_url=response.url)

    def parse_image(self, response: Response):
        meta = response.meta
        yield self._fetched(response, meta["image_url"], meta["page_url"], meta["license"])

    @staticmethod
    def _fetched(response: Response, url: str, page_url: str, license: str) -> FetchedImage:
        return FetchedImage(
            url=url,
            page_url=page_url,
            body=response.body,
            http_status=response.status,
            content_type=_header(response, "Content-Type"),
            etag=_header(response, "ETag"),
            last_modified=_header(response, "Last-Modified"),
            license=license,
        )

    def on_image_error(self, failure: Failure):
        if isinstance(failure.value, MaxImagesReached):
            return  # never tried: the crawl had stored enough images
        request = self._failed_request(failure)
        meta = request.meta if request is not None else {}
        url = meta.get("image_url") or (canonical_url(request.url) if request is not None else "")
        status, message, http_status = self._classify(failure, request)
        row = ManifestRow(
            url=url, status=status, page_url=meta.get("page_url", ""), license=meta.get("license", ""),
            error=message, http_status=http_status,
        )
        response = getattr(failure.value, "response", None)
        if response is not None:
            row.content_type = _header(response, "Content-Type")
            row.etag = _header(response, "ETag")
            row.last_modified = _header(response, "Last-Modified")
        previous = self.previous.get(url)
        if previous is not None and previous.stored:
            if http_status == 304:
                row.status, row.error = "not_modified", ""
                self._copy_stored(row, previous)
                row.etag = row.etag or previous.etag
                row.last_modified = row.last_modified or previous.last_modified
            elif http_status in GONE_STATUSES:
                row.status = "vanished"
                row.error = f"HTTP {http_status}; stored earlier as {previous.path}"
                row.sha256 = previous.sha256
        yield row

    @staticmethod
    def _copy_stored(row: ManifestRow, previous: PreviousImage) -> None:
        row.sha256, row.path = previous.sha256, previous.path
        row.width, row.height, row.format = previous.width, previous.height, previous.format
        row.frames, row.bytes = previous.frames, previous.bytes
        row.content_type = row.content_type or previous.content_type

    def on_page_error(self, failure: Failure):
        request = self._failed_request(failure)
        status, message, http_status = self._classify(failure, request)
        yield ManifestRow(
            url=canonical_url(request.url) if request is not None else "",
            kind="page",
            status=status,
            page_url=request.meta.get("page_url", "") if request is not None else "",
            error=message,
            http_status=http_status,
        )

    @staticmethod
    def _failed_request(failure: Failure) -> Request | None:
        request = getattr(failure, "request", None)
        if request is None:
            response = getattr(failure.value, "response", None)
            request = getattr(response, "request", None)
        return request
