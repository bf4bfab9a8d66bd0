"""Downloader middlewares: every request stays on the allowed origins and public addresses, no redirect
leaves them, and retries back off honouring Retry-After.

``RobotsTxtMiddleware`` replaces Scrapy's, which lets some requests past robots.txt (see its docstring).

The crawl's network rules live in :mod:`scraper.netguard`; these middlewares apply them to each request
(``OriginGuardMiddleware``, first in the chain: start pages, links, images, redirects, robots.txt, requests
from a shared queue alike), to each redirect before it is followed (``OffsiteRedirectMiddleware``), and name
the refusal when the guarded resolver dropped every address of a host (``RefusedAddressMiddleware``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware
from scrapy.exceptions import CannotResolveHostError, IgnoreRequest
from scrapy.utils.asyncio import sleep
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.response import response_status_message
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError

from scraper.netguard import (
    AddressPolicy,
    OriginPolicy,
    guarded_resolver_installed,
    literal_address,
    refusal_for_host,
)

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class BlockedOrigin(IgnoreRequest):
    """A request outside the allowed origins (scheme, host and port) reached the downloader; it was not sent."""


class BlockedAddress(IgnoreRequest):
    """The request's host is, or resolves only to, an address the crawl may not connect to; nothing was sent."""


class OffsiteRedirect(IgnoreRequest):
    """The server redirected outside the allowed origins; the redirect was not followed."""

    def __init__(self, location: str):
        super().__init__(f"redirect to offsite URL {location}")
        self.location = location


def _origin_policy(crawler) -> OriginPolicy | None:
    return getattr(crawler.spider, "origins", None)


def address_policy_from_settings(settings) -> AddressPolicy:
    return AddressPolicy.build(
        allow_private=settings.getbool("GENCOMP_ALLOW_PRIVATE"),
        allowed_networks=settings.getlist("GENCOMP_ALLOWED_NETWORKS"),
    )


class OriginGuardMiddleware:
    """Refuse any request outside the spider's allowed origins, and any literal IP host the policy refuses.

    First in the chain (it takes the place of Scrapy's OffsiteMiddleware, which ignores ports and lets
    ``dont_filter`` requests through), so robots.txt is not even fetched for a refused request. Host names are
    checked where the connection is made (:class:`scraper.netguard.GuardedResolver`).
    """

    def __init__(self, crawler, *, require_guarded_resolver: bool = True):
        self.crawler = crawler
        self.addresses = address_policy_from_settings(crawler.settings)
        self.require_guarded_resolver = require_guarded_resolver
        self.resolver_checked = False

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _check_resolver(self) -> None:
        # Fail closed: without the guarded resolver (a Scrapy that ignores TWISTED_DNS_RESOLVER, or a setting
        # overridden) host names would connect unchecked, so nothing is fetched at all.
        reactor = sys.modules.get("twisted.internet.reactor")  # installed by Scrapy; never installed from here
        if reactor is None or not guarded_resolver_installed(reactor):
            raise BlockedAddress(
                "the crawl's guarded resolver (TWISTED_DNS_RESOLVER = scraper.netguard.GuardedResolver) is not "
                "installed, so addresses cannot be checked; refusing to fetch"
            )
        self.resolver_checked = True

    def process_request(self, request):
        if self.require_guarded_resolver and not self.resolver_checked:
            self._check_resolver()
        origins = _origin_policy(self.crawler)
        if origins is not None and not origins.allows(request.url):
            raise BlockedOrigin(f"{request.url} is outside the allowed origins ({origins.describe()})")
        host = urlsplit(request.url).hostname or ""
        ip = literal_address(host)
        if ip is not None:
            reason = self.addresses.refusal(ip)
            if reason is not None:
                raise BlockedAddress(f"refused {request.url}: {reason}")
        return None


class RobotsTxtMiddleware(ScrapyRobotsTxtMiddleware):
    """Scrapy's robots.txt middleware, with every request judged by the parsed robots.txt.

    Scrapy (2.19) parks the requests that arrive while a host's robots.txt is being fetched on one Deferred,
    and each turns it into an asyncio Future. Twisted passes the parser to the first waiter only: the Future's
    callback returns None, which is what every later waiter receives, and None means "no robots.txt, allow".
    So a crawl that starts several requests at once on a new host (start URLs, a page's images, the requests
    another process left in the shared queue) fetched disallowed URLs. Once the fetch has settled, the parser
    (or None, after a failed fetch) is in ``_parsers``; every waiter reads it from there.
    """

    async def robot_parser(self, request):
        parser = await super().robot_parser(request)
        settled = self._parsers.get(urlparse_cached(request).netloc, parser)
        return parser if isinstance(settled, Deferred) else settled


class RefusedAddressMiddleware:
    """Turn the connection failure of a host whose every address the resolver refused into
    :class:`BlockedAddress`, so it is recorded as such and not retried as a DNS error.

    Must sit above the retry middleware (550): exceptions pass middlewares from high to low numbers.
    """

    def process_exception(self, request, exception):
        if isinstance(exception, (CannotResolveHostError, DNSLookupError)):
            reason = refusal_for_host(urlsplit(request.url).hostname or "")
            if reason is not None:
                raise BlockedAddress(f"refused {request.url}: {reason}")
        return None


class OffsiteRedirectMiddleware:
    """Refuse redirects that leave the allowed origins before RedirectMiddleware follows them.

    Must sit above RedirectMiddleware (600) in DOWNLOADER_MIDDLEWARES: responses pass middlewares from high
    to low numbers, so this sees the 3xx first. Raising :class:`OffsiteRedirect` sends the request to its
    errback, which records the row. A redirect within the origins is followed and its new request passes
    :class:`OriginGuardMiddleware` and the guarded resolver like any other.
    """

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_response(self, request, response):
        if response.status not in REDIRECT_STATUSES or b"Location" not in response.headers:
            return response
        location = response.headers[b"Location"].decode("latin-1").strip()
        if location.startswith("//"):
            location = request.url.split(":", 1)[0] + ":" + location
        target = urljoin(request.url, location)
        origins = _origin_policy(self.crawler)
        if origins is not None and not origins.allows(target):
            raise OffsiteRedirect(target)
        return response


class MaxImagesReached(IgnoreRequest):
    """The crawl stored --max-images images; queued image requests are dropped without being tried."""


class MaxImagesMiddleware:
    """Stop queued image requests once the spider's ``stop_scheduling`` flag is set (``--max-images``).

    Closing the spider cancels the scheduler's queue only gradually, and every image downloaded meanwhile would
    still be validated and stored; this keeps the overshoot to the downloads already in flight.
    """

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request):
        if "image_url" in request.meta and getattr(self.crawler.spider, "stop_scheduling", False):
            raise MaxImagesReached("--max-images reached")
        return None


def parse_retry_after(value: bytes | str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or invalid."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before each retry: Retry-After when the server sends one, else exponential
    backoff (``GENCOMP_RETRY_BACKOFF_BASE * 2**attempt``, capped at ``GENCOMP_RETRY_BACKOFF_MAX``).

    A Retry-After longer than ``GENCOMP_RETRY_AFTER_MAX`` seconds gives up at once: the response goes to the
    spider and is recorded (e.g. http_429) rather than stalling the crawl. Waiting happens in the middleware,
    so the request keeps its place in the downloader and the domain is not hammered meanwhile.
    """

    def __init__(self, settings):
        super().__init__(settings)
        self.backoff_base = settings.getfloat("GENCOMP_RETRY_BACKOFF_BASE", 1.0)
        self.backoff_max = settings.getfloat("GENCOMP_RETRY_BACKOFF_MAX", 30.0)
        self.retry_after_max = settings.getfloat("GENCOMP_RETRY_AFTER_MAX", 120.0)

    def backoff_delay(self, request) -> float:
        attempt = request.meta.get("retry_times", 0)
        return min(self.backoff_max, self.backoff_base * (2**attempt))

    async def process_response(self, request, response):
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        retry_after = parse_retry_after(response.headers.get(b"Retry-After"))
        if retry_after is not None and retry_after > self.retry_after_max:
            logger.info(
                "Not retrying %s: Retry-After %.0f s exceeds GENCOMP_RETRY_AFTER_MAX %.0f s",
                request, retry_after, self.retry_after_max,
            )
            return response
        delay = retry_after if retry_after is not None else self.backoff_delay(request)
        retry_request = self._retry(request, response_status_message(response.status))
        if retry_request is None:
            return response
        if delay > 0:
            await sleep(delay)
        return retry_request

    async def process_exception(self, request, exception):
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry", False):
            return None
        delay = self.backoff_delay(request)
        retry_request = self._retry(request, exception)
        if retry_request is not None and delay > 0:
            await sleep(delay)
        return retry_request
