"""What one crawl's processes must agree on: which pages and images are taken, which contents are stored.

A single-process crawl keeps this in memory (:class:`LocalCrawlState`). A distributed crawl (``--redis-url``)
keeps it in Redis (:class:`RedisCrawlState`), next to the scrapy-redis request queue, so N processes behave
like one crawler: each page and each image URL is claimed by exactly one process (atomic ``SADD`` /
``HSETNX``), each content hash is stored as "ok" once per run, and ``--max-images`` counts the run's total.

Protocol of a distributed run (all processes get the same arguments, except ``--worker-id``):

1. ``register()``: ``INCR <key>:workers``. Every process then claims the start URLs like any other page, so
   exactly one of them enqueues each start URL, however they race; nothing has to be seeded beforehand.
2. The processes pull requests from the shared queue (``<key>:requests``, scrapy-redis' scheduler with
   ``SCHEDULER_PERSIST``: one process closing must not wipe the queue the others still use).
3. A process closes once the shared queue has stayed empty for the idle timeout (scraper.extensions).
4. ``finish()``: one Lua script decrements the worker count and, when it reaches 0, deletes the run's keys.
   The process that saw 0 is the last one: it merges the manifest parts. A process that starts after that is
   a new run (a rescrape of the same folder: conditional requests from the merged manifest).

Redis keys of a run, all under one prefix (default ``gencomp:<hash of the out dir>``): ``:workers``,
``:pages`` (set), ``:images`` (hash url -> first page), ``:contents`` (set of sha256), ``:stored`` (counter),
``:requests`` (scrapy-redis queue) and ``:dupefilter`` (scrapy-redis RFPDupeFilter).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# KEYS[1] is the worker counter, KEYS[2..] the rest of the run's keys. Atomic: a process that registers at the
# same moment either counts before the decrement (and the run goes on) or starts a fresh run after the delete.
_FINISH_SCRIPT = """
local left = redis.call('DECR', KEYS[1])
if left <= 0 then
    redis.call('DEL', unpack(KEYS))
end
return left
"""

KEY_SUFFIXES = ("workers", "pages", "images", "contents", "stored", "requests", "dupefilter")


def default_redis_key(out_dir: str | Path) -> str:
    """The key prefix shared by every process that writes to ``out_dir`` (resolved path, hashed)."""
    digest = hashlib.sha256(str(Path(out_dir).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"gencomp:{digest}"


def validate_redis_key(prefix: str) -> str:
    # scrapy-redis %-formats its key settings with the spider name, so a '%' would break them.
    if not prefix or "%" in prefix or any(c.isspace() for c in prefix):
        raise ValueError(f"redis key prefix {prefix!r} must be non-empty, without '%' or whitespace")
    return prefix


class LocalCrawlState:
    """One process's own memory: the single-process crawl."""

    distributed = False

    def __init__(self) -> None:
        self._pages: set[str] = set()
        self._images: dict[str, str] = {}
        self._contents: set[str] = set()
        self._stored = 0

    def claim_page(self, url: str) -> bool:
        """True when this caller is the first to claim the page (and must request it)."""
        if url in self._pages:
            return False
        self._pages.add(url)
        return True

    def claim_image(self, url: str, page_url: str) -> str | None:
        """None when this caller is the first to claim the image URL; else the page it was first found on."""
        first = self._images.get(url)
        if first is not None:
            return first
        self._images[url] = page_url
        return None

    def claim_content(self, sha256: str) -> bool:
        """True when no one stored this content in this run before."""
        if sha256 in self._contents:
            return False
        self._contents.add(sha256)
        return True

    def count_stored(self) -> int:
        """Count one more stored image; returns the run's total so far."""
        self._stored += 1
        return self._stored


class RedisCrawlState:
    """The run's shared state in Redis (see the module docstring for the protocol)."""

    distributed = True

    def __init__(self, *, redis_url: str, key_prefix: str, client=None):
        import redis

        self.key_prefix = validate_redis_key(key_prefix)
        self.redis_url = redis_url
        self.client = client if client is not None else redis.Redis.from_url(
            redis_url, socket_timeout=30, socket_connect_timeout=10, retry_on_timeout=True
        )
        self._finish = self.client.register_script(_FINISH_SCRIPT)

    def key(self, suffix: str) -> str:
        return f"{self.key_prefix}:{suffix}"

    def all_keys(self) -> list[str]:
        return [self.key(s) for s in KEY_SUFFIXES]

    def ping(self) -> None:
        self.client.ping()

    def register(self) -> int:
        """Join the run; returns how many processes are in it now (1: this one started it)."""
        return int(self.client.incr(self.key("workers")))

    def finish(self) -> int:
        """Leave the run; returns how many are left. 0: this was the last, and the run's keys are gone."""
        return int(self._finish(keys=self.all_keys()))

    def reset(self) -> int:
        """Delete the run's keys (after a crashed run; never while its processes still run). Returns keys deleted."""
        return int(self.client.delete(*self.all_keys()))

    def workers(self) -> int:
        return int(self.client.get(self.key("workers")) or 0)

    def claim_page(self, url: str) -> bool:
        return self.client.sadd(self.key("pages"), url) == 1

    def claim_image(self, url: str, page_url: str) -> str | None:
        if self.client.hsetnx(self.key("images"), url, page_url):
            return None
        first = self.client.hget(self.key("images"), url)
        return first.decode("utf-8") if isinstance(first, bytes) else (first or "")

    def claim_content(self, sha256: str) -> bool:
        return self.client.sadd(self.key("contents"), sha256) == 1

    def count_stored(self) -> int:
        return int(self.client.incr(self.key("stored")))

    def close(self) -> None:
        self.client.close()


def crawl_state_from_settings(settings) -> LocalCrawlState | RedisCrawlState:
    """Redis state when ``GENCOMP_REDIS_URL`` is set (``scraper.crawl --redis-url``), else local memory."""
    url = settings.get("GENCOMP_REDIS_URL")
    if not url:
        return LocalCrawlState()
    return RedisCrawlState(redis_url=url, key_prefix=settings.get("GENCOMP_REDIS_KEY"))
