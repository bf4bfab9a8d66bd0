"""Scrapy settings for the gencomp image crawler.

Politeness is on by default: robots.txt is obeyed (also for image requests), AutoThrottle adapts the delay to
the server's latency, retries back off and honour Retry-After, and every download has a time and byte cap.
``scraper.crawl`` overrides the per-run values (out dir, limits, concurrency) from its command line; the
``GENCOMP_*`` names are this project's own settings.
"""

BOT_NAME = "gencomp"
SPIDER_MODULES = ["scraper.spiders"]
NEWSPIDER_MODULE = "scraper.spiders"

USER_AGENT = "gencomp-research-crawler/0.1 (+https://github.com/gencomp/gencomp; image compression research)"
ROBOTSTXT_OBEY = True

# Concurrency and politeness.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.25
DOWNLOAD_DELAY_JITTER = 0.5  # ±50 %: requests do not arrive in lockstep
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 4.0

# Caps on every download.
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 50 * 1024 * 1024
DOWNLOAD_WARNSIZE = 0
REDIRECT_MAX_TIMES = 5
METAREFRESH_ENABLED = False  # a meta refresh is not a link to an image page; links are followed explicitly

# Retries: a superset of Scrapy's codes, with backoff (scraper.middlewares.BackoffRetryMiddleware).
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
GENCOMP_RETRY_BACKOFF_BASE = 1.0  # seconds before the first retry; doubles per attempt
GENCOMP_RETRY_BACKOFF_MAX = 30.0
GENCOMP_RETRY_AFTER_MAX = 120.0  # a longer Retry-After gives up on the URL instead of stalling the crawl

DOWNLOADER_MIDDLEWARES = {
    "scraper.middlewares.MaxImagesMiddleware": 60,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "scraper.middlewares.BackoffRetryMiddleware": 550,
    # Above RedirectMiddleware (600) so it sees 3xx responses before they are followed.
    "scraper.middlewares.OffsiteRedirectMiddleware": 650,
}

# The spider limits page depth itself (image requests must not count as a level), so Scrapy's is off.
DEPTH_LIMIT = 0
# FIFO queues give breadth-first page order; image requests carry a higher priority than pages, so the images
# of pages already seen are fetched before the crawl goes wider (bounded queues, early results).
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"

COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"

ITEM_PIPELINES = {
    "scraper.pipelines.ValidateAndStorePipeline": 100,
    "scraper.pipelines.ManifestPipeline": 900,
}

# Per-run values (scraper.crawl sets them from its command line).
GENCOMP_OUT_DIR = ""
GENCOMP_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "JXL", "MPO"]
GENCOMP_MAX_PIXELS = 64_000_000
GENCOMP_MIN_WIDTH = 1
GENCOMP_MIN_HEIGHT = 1
GENCOMP_WORKERS = 2
GENCOMP_MAX_IMAGES = 0  # 0: no limit
GENCOMP_MANIFEST_FLUSH_ROWS = 500  # rewrite the manifest every this many rows, so a crash loses little
