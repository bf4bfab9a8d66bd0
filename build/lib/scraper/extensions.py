"""Closing a distributed crawl process: only after the shared request queue has stayed empty for a while.

Scrapy closes a spider as soon as its own process is idle, but in a distributed crawl another process may still
be parsing a page that will enqueue more requests. This extension keeps the spider open (``DontCloseSpider``)
until the engine has been idle, with the shared queue empty, for ``GENCOMP_REDIS_IDLE_TIMEOUT`` seconds in a
row; any request reaching this process's downloader restarts the wait. A process that leaves early loses no
work: whoever enqueues a request still runs itself, so it pops whatever it pushed if no one else does.
Enabled by ``scraper.crawl --redis-url`` only.
"""

from __future__ import annotations

import logging
import time

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured

logger = logging.getLogger(__name__)


class CloseWhenSharedQueueIdle:
    def __init__(self, crawler, *, idle_timeout: float, poll_interval: float):
        self.crawler = crawler
        self.idle_timeout = idle_timeout
        self.poll_interval = poll_interval
        self.idle_since: float | None = None

    @classmethod
    def from_crawler(cls, crawler):
        if not crawler.settings.get("GENCOMP_REDIS_URL"):
            raise NotConfigured("only for distributed crawls")
        idle_timeout = crawler.settings.getfloat("GENCOMP_REDIS_IDLE_TIMEOUT", 10.0)
        poll = crawler.settings.getfloat("GENCOMP_REDIS_POLL_INTERVAL", 0.5)
        ext = cls(crawler, idle_timeout=idle_timeout, poll_interval=poll)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(ext.request_reached_downloader, signal=signals.request_reached_downloader)
        return ext

    def spider_opened(self, spider=None) -> None:
        # While a spider is kept open, the engine looks at the scheduler again only on its slot heartbeat
        # (5 s by default, a private class attribute): at that pace a waiting process notices requests
        # enqueued by the others late. The heartbeat starts after spider_opened, so this instance value counts.
        self.crawler.engine._SLOT_HEARTBEAT_INTERVAL = self.poll_interval

    def request_reached_downloader(self, request=None, spider=None) -> None:
        self.idle_since = None

    def spider_idle(self, spider=None) -> None:
        # Scrapy sends spider_idle only when this process has nothing in flight and the shared queue is empty.
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        waited = now - self.idle_since
        if waited < self.idle_timeout:
            raise DontCloseSpider(f"shared queue empty for {waited:.1f}s of {self.idle_timeout:.1f}s")
        logger.info("shared queue empty for %.1f s: closing this crawl process", waited)
