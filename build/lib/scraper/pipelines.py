"""Item pipelines: validate and store downloaded images off the reactor, then record every row in the manifest.

``ValidateAndStorePipeline`` turns each ``FetchedImage`` into a ``ManifestRow`` by running
:func:`scraper.validate.validate_and_store` in a worker-process pool; the reactor thread only waits on a
Deferred, so downloads continue while images decode. ``ManifestPipeline`` appends every row to
``<out>/manifest.parquet``, rewriting it atomically every ``GENCOMP_MANIFEST_FLUSH_ROWS`` rows and at the end;
in a distributed crawl (``GENCOMP_REDIS_URL`` set) it writes this process's rows to its own manifest part
instead, which the last process merges (:func:`scraper.manifest.merge_manifest_parts`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

import pyarrow as pa
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.python.failure import Failure

from scraper.items import FetchedImage, ManifestRow
from scraper.manifest import prune_merged_parts, rows_to_table, write_manifest, write_manifest_part
from scraper.validate import OK, ValidationPool

logger = logging.getLogger(__name__)


def deferred_from_future(future: Future) -> Deferred:
    """A Deferred fired on the reactor thread when a ``concurrent.futures`` future completes.

    Uses the future's done-callback instead of parking a reactor pool thread on ``future.result()``.
    """
    from twisted.internet import reactor  # imported late: importing it early would install the default reactor

    deferred: Deferred = Deferred()

    def fire(done: Future) -> None:
        exc = done.exception()
        if exc is not None:
            deferred.errback(Failure(exc))
        else:
            deferred.callback(done.result())

    future.add_done_callback(lambda done: reactor.callFromThread(fire, done))
    return deferred


class ValidateAndStorePipeline:
    def __init__(self, crawler):
        settings = crawler.settings
        self.crawler = crawler
        self.out_dir = settings.get("GENCOMP_OUT_DIR")
        self.workers = settings.getint("GENCOMP_WORKERS", 2)
        self.formats = frozenset(f.upper() for f in settings.getlist("GENCOMP_FORMATS"))
        self.max_pixels = settings.getint("GENCOMP_MAX_PIXELS")
        self.min_width = settings.getint("GENCOMP_MIN_WIDTH", 1)
        self.min_height = settings.getint("GENCOMP_MIN_HEIGHT", 1)
        self.max_images = settings.getint("GENCOMP_MAX_IMAGES", 0)
        self.pool: ValidationPool | None = None
        # At most two bodies per worker are queued for validation. Waiting here back-pressures Scrapy (its
        # scraper slot fills and downloading pauses), which bounds memory and the --max-images overshoot.
        self.in_flight = DeferredSemaphore(2 * self.workers)
        self.hashes_stored: set[str] = set()  # content stored by earlier runs (from the manifest)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self) -> None:
        self.pool = ValidationPool(
            workers=self.workers,
            out_dir=self.out_dir,
            formats=self.formats,
            max_pixels=self.max_pixels,
            min_width=self.min_width,
            min_height=self.min_height,
        )
        self.hashes_stored = set(self.crawler.spider.known_hashes)

    def close_spider(self) -> None:
        if self.pool is not None:
            self.pool.close()

    async def process_item(self, item):
        if not isinstance(item, FetchedImage):
            return item
        row = ManifestRow(
            url=item.url,
            status="",
            page_url=item.page_url,
            http_status=item.http_status,
            content_type=item.content_type,
            fetched_at=item.fetched_at,
            etag=item.etag,
            last_modified=item.last_modified,
            license=item.license,
            bytes=len(item.body),
        )
        await maybe_deferred_to_future(self.in_flight.acquire())
        try:
            if self.crawler.spider.stop_scheduling:
                row.status, row.error = "skipped", "downloaded after --max-images was reached; not validated"
                return row
            result = await maybe_deferred_to_future(deferred_from_future(self.pool.submit(item.body)))
        except Exception as exc:  # a crashed worker must not lose the row
            logger.error("validation failed for %s: %r", item.url, exc)
            row.status, row.error = "validation_error", f"{type(exc).__name__}: {exc}"
            return row
        finally:
            self.in_flight.release()
        row.status, row.error, row.sha256, row.path = result.status, result.error, result.sha256, result.path
        row.width, row.height, row.format, row.frames = result.width, result.height, result.format, result.frames
        if result.status == OK:
            spider = self.crawler.spider
            previous = spider.previous.get(item.url)
            if previous is not None and previous.stored and previous.sha256 == result.sha256:
                row.status = "not_modified"  # refetched in full (server ignored the validators), same content
            elif result.sha256 in self.hashes_stored or not spider.state.claim_content(result.sha256):
                # Stored by an earlier run, or earlier in this run (by any process of a distributed crawl).
                row.status = "duplicate_content"
            else:
                stored = spider.state.count_stored()  # the run's total, over every process
                if self.max_images and stored >= self.max_images and not spider.stop_scheduling:
                    spider.stop_scheduling = True
                    logger.info("stored %d images: --max-images reached, closing the crawl", stored)
                    # Not awaited: closing waits for in-flight items, this one included.
                    deferred_from_coro(self.crawler.engine.close_spider_async(reason="max_images"))
        return row


class ManifestPipeline:
    def __init__(self, crawler):
        self.crawler = crawler
        self.out_dir = crawler.settings.get("GENCOMP_OUT_DIR")
        self.crawl_id = crawler.settings.get("GENCOMP_CRAWL_ID", "")
        self.flush_rows = max(1, crawler.settings.getint("GENCOMP_MANIFEST_FLUSH_ROWS", 500))
        self.write_part = bool(crawler.settings.get("GENCOMP_REDIS_URL"))
        self.previous_table: pa.Table | None = None
        self.rows: list[dict] = []
        self.flushed_rows = 0

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self) -> None:
        self.previous_table = self.crawler.spider.previous_table

    def process_item(self, item):
        if not isinstance(item, ManifestRow):
            raise TypeError(f"ManifestPipeline got {type(item).__name__}; expected ManifestRow")
        item.crawl_id = self.crawl_id
        self.rows.append(item.as_dict())
        if len(self.rows) - self.flushed_rows >= self.flush_rows:
            self.flush()
        return item

    def close_spider(self) -> None:
        self.flush()
        if not self.write_part:
            # Parts left by an interrupted distributed run were read into previous_table and are in the file now.
            prune_merged_parts(self.out_dir)

    def flush(self) -> None:
        if self.write_part:
            # Always written, even with no rows: the part is this process's record that it ran.
            write_manifest_part(self.out_dir, self.crawl_id, rows_to_table(self.rows))
        else:
            write_manifest(self.out_dir, pa.concat_tables([self.previous_table, rows_to_table(self.rows)]))
        self.flushed_rows = len(self.rows)
