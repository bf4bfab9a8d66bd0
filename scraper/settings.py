"""Scrapy settings for the gencomp image crawler.

Every value a user can set comes from :class:`gencomp.config.ScrapeParams` (its field defaults here; the
per-run values from ``scraper.crawl``'s command line, whose defaults are the same fields), so params.yaml,
``gencomp scrape``, ``python -m scraper.crawl`` and a bare ``scrapy crawl images`` agree. The rest are fixed
choices of this project. The ``GENCOMP_*`` names are this project's own settings.

Politeness is on by default: robots.txt is obeyed (also for image requests), AutoThrottle adapts the delay to
the server's latency, retries back off and honour Retry-After, and every download has a time and byte cap.
Safety: requests stay on the allowed origins and on public addresses (:mod:`scraper.netguard`): the guarded
resolver below checks the address every connection is made to; proxies from the environment are not used, as
the address checked would be the proxy's.
"""

from gencomp.config import ScrapeParams

_DEFAULTS = ScrapeParams()


def concurrency_settings(concurrency_per_domain: int) -> dict:
    """The Scrapy settings that follow from the per-domain concurrency."""
    return {
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency_per_domain,
        "CONCURRENT_REQUESTS": max(16, concurrency_per_domain * 4),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(concurrency_per_domain),
    }


def timing_settings(download_delay: float, timeout_s: float, retries: int) -> dict:
    """The Scrapy settings that follow from the delay, timeout and retry count."""
    return {
        "DOWNLOAD_DELAY": download_delay,
        "AUTOTHROTTLE_START_DELAY": download_delay,
        "DOWNLOAD_TIMEOUT": timeout_s,
        "RETRY_TIMES": retries,
        "RETRY_ENABLED": retries > 0,
        # Backoff proportionate to the timeout: short test/demo timeouts mean short waits.
        "GENCOMP_RETRY_BACKOFF_BASE": min(1.0, timeout_s / 4),
    }


BOT_NAME = "gencomp"
SPIDER_MODULES = ["scraper.spiders"]
NEWSPIDER_MODULE = "scraper.spiders"

USER_AGENT = _DEFAULTS.user_agent
ROBOTSTXT_OBEY = True

# Concurrency and politeness.
_concurrency = concurrency_settings(_DEFAULTS.concurrency_per_domain)
CONCURRENT_REQUESTS = _concurrency["CONCURRENT_REQUESTS"]
CONCURRENT_REQUESTS_PER_DOMAIN = _concurrency["CONCURRENT_REQUESTS_PER_DOMAIN"]
AUTOTHROTTLE_TARGET_CONCURRENCY = _concurrency["AUTOTHROTTLE_TARGET_CONCURRENCY"]
DOWNLOAD_DELAY_JITTER = 0.5  # ±50 %: requests do not arrive in lockstep
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_MAX_DELAY = 30.0

# Caps on every download.
_timing = timing_settings(_DEFAULTS.download_delay, _DEFAULTS.timeout_s, _DEFAULTS.retries)
DOWNLOAD_DELAY = _timing["DOWNLOAD_DELAY"]
AUTOTHROTTLE_START_DELAY = _timing["AUTOTHROTTLE_START_DELAY"]
DOWNLOAD_TIMEOUT = _timing["DOWNLOAD_TIMEOUT"]
DOWNLOAD_MAXSIZE = _DEFAULTS.max_bytes
DOWNLOAD_WARNSIZE = 0
REDIRECT_MAX_TIMES = 5
METAREFRESH_ENABLED = False  # a meta refresh is not a link to an image page; links are followed explicitly

# Retries: a superset of Scrapy's codes, with backoff (scraper.middlewares.BackoffRetryMiddleware).
RETRY_ENABLED = _timing["RETRY_ENABLED"]
RETRY_TIMES = _timing["RETRY_TIMES"]
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
GENCOMP_RETRY_BACKOFF_BASE = _timing["GENCOMP_RETRY_BACKOFF_BASE"]  # seconds before the first retry; doubles
GENCOMP_RETRY_BACKOFF_MAX = 30.0
GENCOMP_RETRY_AFTER_MAX = 120.0  # a longer Retry-After gives up on the URL instead of stalling the crawl

# Network safety (scraper.netguard). The resolver checks the address of every connection; the middlewares check
# origins and literal IPs before a request is sent and name refusals in the manifest.
TWISTED_DNS_RESOLVER = "scraper.netguard.GuardedResolver"
HTTPPROXY_ENABLED = False
GENCOMP_ALLOW_PRIVATE = _DEFAULTS.allow_private_addresses
GENCOMP_ALLOWED_NETWORKS = list(_DEFAULTS.allowed_networks)
GENCOMP_RESOLVE: dict[str, str] = {}  # host -> address answered without DNS (--resolve)

DOWNLOADER_MIDDLEWARES = {
    # Scrapy's OffsiteMiddleware ignores ports and passes dont_filter requests; the origin guard replaces it.
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "scraper.middlewares.OriginGuardMiddleware": 50,
    "scraper.middlewares.MaxImagesMiddleware": 60,
    # Scrapy's lets requests that wait for a host's robots.txt together past it; ours judges each (same slot).
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "scraper.middlewares.RobotsTxtMiddleware": 100,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "scraper.middlewares.BackoffRetryMiddleware": 550,
    # Above the retry middleware (550): a host whose addresses were all refused is not retried.
    "scraper.middlewares.RefusedAddressMiddleware": 580,
    # Above RedirectMiddleware (600) so it sees 3xx responses before they are followed.
    "scraper.middlewares.OffsiteRedirectMiddleware": 650,
}

# The spider limits page depth itself (image requests must not count as a level), so Scrapy's is off.
DEPTH_LIMIT = 0
# FIFO queues give breadth-first page order; image requests carry a higher priority than pages, so the images
# of pages already seen are fetched before the crawl goes wider (bounded queues, early results).
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"
# The shared queue of a distributed crawl (scrapy-redis, --redis-url) holds JSON, never pickle: whoever can
# write to that Redis must not be able to run code in the crawl processes.
SCHEDULER_SERIALIZER = "scraper.redis_serializer"

COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"

ITEM_PIPELINES = {
    "scraper.pipelines.ValidateAndStorePipeline": 100,
    "scraper.pipelines.ManifestPipeline": 900,
}

# Per-run values (scraper.crawl sets them from its command line).
GENCOMP_OUT_DIR = ""
GENCOMP_FORMATS = list(_DEFAULTS.formats)
GENCOMP_MAX_PIXELS = _DEFAULTS.max_pixels
GENCOMP_MIN_WIDTH = _DEFAULTS.min_width
GENCOMP_MIN_HEIGHT = _DEFAULTS.min_height
GENCOMP_WORKERS = _DEFAULTS.workers
GENCOMP_MAX_IMAGES = _DEFAULTS.max_images  # 0: no limit
GENCOMP_MANIFEST_FLUSH_ROWS = 500  # rewrite the manifest every this many rows, so a crash loses little
