"""Where the crawl may connect: allowed origins (scheme, host, port) and public addresses only.

Pages are written by strangers: a link, an image or a redirect can point the crawler at
``http://169.254.169.254/`` (cloud metadata), at ``http://10.0.0.5:6379/`` or at another port of the site's own
host. Two independent checks keep the crawl on the sites it was pointed at:

**Origins** (:class:`OriginPolicy`). A URL is fetched only when its scheme, host and port match an allowed
origin. The start URLs' origins are allowed exactly (``http://example.com`` also allows
``https://example.com`` on port 443 and the reverse: the upgrade redirect every site sends; a start URL with an
explicit port allows that port only). ``allowed_domains`` adds entries written ``[scheme://]host[:port]``: a
listed host allows itself *and its subdomains*, over http and https on their default ports unless the entry
names a scheme or port. A subdomain is therefore allowed only when its parent was listed explicitly; the start
URLs' hosts never extend to their subdomains.

**Addresses** (:class:`AddressPolicy`). Every host is resolved, and an address that is not public (private,
loopback, link-local, multicast, reserved, unspecified, shared/CGNAT; IPv4 and IPv6, including IPv4 addresses
embedded in IPv6 as mapped, 6to4, Teredo or NAT64) is refused unless ``allow_private`` is set or the address is
inside one of ``allowed_networks``. The check runs in the resolver the HTTP client connects through
(:class:`GuardedResolver`, installed as Scrapy's ``TWISTED_DNS_RESOLVER``): the addresses it hands to the
connection are the ones it checked, so a DNS answer that changes between a check and the connect (DNS
rebinding) cannot slip a private address in. Literal IP hosts are refused before any request is sent
(:class:`scraper.middlewares.OriginGuardMiddleware`).

A refused resolution is remembered per host (:data:`REFUSALS`) so the manifest row can say
``blocked_private_address`` rather than a DNS error. ``resolve_overrides`` (``--resolve HOST=ADDR``, as curl's
``--resolve``; ``*.example.com`` matches subdomains) answers chosen names without DNS and goes through the same
check; the tests use it to point names at internal addresses without sending a packet to them.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_TWIN_SCHEME = {"http": "https", "https": "http"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SHARED_V4 = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not global, not "private" in Python < 3.13
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII names, no brackets around IPv6."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def literal_address(host: str) -> IPAddress | None:
    """The host as an IP address when it is one (``10.0.0.1``, ``[::1]``), else None."""
    try:
        return ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str | IPAddress) -> str | None:
    """Why the crawler must not connect to this address ("loopback", "private" ...), or None when it is public."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "link-local (scoped)"
        inner = _embedded_v4(ip)
        if inner is not None:
            problem = address_problem(inner)
            if problem is not None:
                return f"{problem} (IPv4 {inner} inside IPv6)"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("shared address space (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_V4),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    )
    for name, hit in checks:
        if hit:
            return name
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the crawl may connect to: public ones, plus ``allowed_networks``, or all with allow_private."""

    allow_private: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def build(cls, *, allow_private: bool = False, allowed_networks: Iterable[str] = ()) -> AddressPolicy:
        return cls(bool(allow_private), tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks))

    def refusal(self, address: str | IPAddress) -> str | None:
        """None when the crawl may connect to ``address``; else the reason, for the manifest."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return f"{address!r} is not an IP address"
        problem = address_problem(ip)
        if problem is None or self.allow_private:
            return None
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and _embedded_v4(ip) is not None:
            candidates.append(_embedded_v4(ip))
        for net in self.allowed_networks:
            if any(c.version == net.version and c in net for c in candidates):
                return None
        return f"{ip} is {problem}"


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def url_origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL, the port made explicit; None for anything else or a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return Origin(scheme, normalise_host(parts.hostname), port if port is not None else DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class DomainRule:
    """An ``allowed_domains`` entry: a host and its subdomains, on these schemes and ports."""

    host: str
    schemes: tuple[str, ...]
    port: int | None  # None: each scheme's default port

    @classmethod
    def parse(cls, entry: str) -> DomainRule:
        text = entry.strip()
        explicit_scheme = "://" in text
        parts = urlsplit(text if explicit_scheme else f"http://{text}")
        scheme = parts.scheme.lower()
        if (scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query
                or parts.fragment or parts.username is not None):
            raise ValueError(f"allowed domain {entry!r} must be [http(s)://]host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"allowed domain {entry!r} has an invalid port") from None
        schemes = (scheme,) if explicit_scheme else ("http", "https")
        return cls(normalise_host(parts.hostname), schemes, port)

    def allows(self, origin: Origin) -> bool:
        if origin.scheme not in self.schemes:
            return False
        if origin.port != (self.port if self.port is not None else DEFAULT_PORTS[origin.scheme]):
            return False
        if literal_address(self.host) is not None:
            return origin.host == self.host  # an IP has no subdomains
        return origin.host == self.host or origin.host.endswith("." + self.host)


class OriginPolicy:
    """The origins a crawl may fetch from: the start URLs' (exactly) and the ``allowed_domains`` rules."""

    def __init__(self, start_urls: Iterable[str], allowed_domains: Iterable[str] = ()):
        origins: set[Origin] = set()
        for url in start_urls:
            origin = url_origin(url)
            if origin is None:
                raise ValueError(f"start URL {url!r} is not an http(s) URL with a host")
            origins.add(origin)
            if origin.port == DEFAULT_PORTS[origin.scheme]:
                twin = _TWIN_SCHEME[origin.scheme]
                origins.add(Origin(twin, origin.host, DEFAULT_PORTS[twin]))
        self.origins = frozenset(origins)
        self.rules = tuple(DomainRule.parse(d) for d in allowed_domains if d and d.strip())

    def allows(self, url: str) -> bool:
        origin = url_origin(url)
        if origin is None:
            return False
        return origin in self.origins or any(rule.allows(origin) for rule in self.rules)

    def describe(self) -> str:
        parts = sorted(str(o) for o in self.origins)
        parts += [
            f"{'/'.join(r.schemes)}://(*.){r.host}:{r.port if r.port is not None else 'default'}" for r in self.rules
        ]
        return ", ".join(parts)


# host -> why its last resolution was refused; read by the middleware that names the manifest status. Written
# from the resolver's threads.
REFUSALS: dict[str, str] = {}
_REFUSALS_LOCK = threading.Lock()


def refusal_for_host(host: str) -> str | None:
    with _REFUSALS_LOCK:
        return REFUSALS.get(normalise_host(host))


def _override_for(host: str, overrides: Mapping[str, str]) -> str | None:
    if host in overrides:
        return overrides[host]
    labels = host.split(".")
    for i in range(1, len(labels)):
        wildcard = "*." + ".".join(labels[i:])
        if wildcard in overrides:
            return overrides[wildcard]
    return None


def parse_resolve_overrides(entries: Iterable[str]) -> dict[str, str]:
    """``HOST=ADDR`` entries (``*.example.com=10.0.0.1`` for subdomains) as a dict; raises ValueError on bad ones."""
    overrides: dict[str, str] = {}
    for entry in entries:
        host, sep, addr = entry.partition("=")
        if not sep or not host.strip() or literal_address(addr) is None:
            raise ValueError(f"--resolve {entry!r} must be HOST=IP")
        wildcard = host.strip().startswith("*.")
        name = normalise_host(host.strip()[2:] if wildcard else host)
        overrides[("*." if wildcard else "") + name] = str(literal_address(addr))
    return overrides


class GuardedGetaddrinfo:
    """A ``getaddrinfo`` that answers overrides without DNS and drops every address the policy refuses.

    Called by Twisted's GAIResolver in its thread pool, for every connection the HTTP client makes.
    """

    def __init__(self, policy: AddressPolicy, overrides: Mapping[str, str] | None = None, lookup=None):
        self.policy = policy
        self.overrides = dict(overrides or {})
        self.lookup = lookup  # None: socket.getaddrinfo, looked up per call

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - getaddrinfo's names
        try:
            return self._resolve(host, port, family, type, proto, flags)
        except socket.gaierror:
            raise
        except Exception as exc:  # GAIResolver handles gaierror only: anything else would hang the connection
            raise socket.gaierror(socket.EAI_FAIL, f"resolving {host!r}: {exc.__class__.__name__}: {exc}") from exc

    def _resolve(self, host, port, family, type, proto, flags):  # noqa: A002
        name = normalise_host(host.decode("idna") if isinstance(host, bytes) else str(host))
        override = _override_for(name, self.overrides)
        if override is not None:
            ip = ipaddress.ip_address(override)
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (0, socket.AF_UNSPEC, fam):
                results = []
            else:
                sockaddr = (str(ip), int(port or 0), 0, 0) if ip.version == 6 else (str(ip), int(port or 0))
                results = [(fam, type or socket.SOCK_STREAM, proto or socket.IPPROTO_TCP, "", sockaddr)]
        else:
            results = (self.lookup or socket.getaddrinfo)(host, port, family, type, proto, flags)
        kept, refused = [], []
        for result in results:
            reason = self.policy.refusal(result[4][0].split("%", 1)[0])
            (refused if reason else kept).append(reason or result)
        with _REFUSALS_LOCK:
            if refused and not kept:
                REFUSALS[name] = f"{name} resolves to refused addresses: " + "; ".join(sorted(set(refused)))
            else:
                REFUSALS.pop(name, None)
        return kept


def make_guarded_resolver(reactor, policy: AddressPolicy, overrides: Mapping[str, str] | None = None):
    """An IHostnameResolver for ``reactor`` that resolves through :class:`GuardedGetaddrinfo`."""
    from twisted.internet._resolver import GAIResolver

    return GAIResolver(reactor, getaddrinfo=GuardedGetaddrinfo(policy, overrides))


class GuardedResolver:
    """Scrapy ``TWISTED_DNS_RESOLVER``: installs the guarded resolver as the reactor's name resolver.

    Twisted's HostnameEndpoint (the HTTP client's connections) asks ``reactor.nameResolver`` for addresses and
    connects only to those it is given, literal IPs included; the simple ``reactor.resolver`` interface is
    derived from it. Reads ``GENCOMP_ALLOW_PRIVATE``, ``GENCOMP_ALLOWED_NETWORKS`` and ``GENCOMP_RESOLVE``.
    """

    def __init__(self, reactor, policy: AddressPolicy, overrides: Mapping[str, str]):
        self.reactor = reactor
        self.resolver = make_guarded_resolver(reactor, policy, overrides)

    @classmethod
    def from_crawler(cls, crawler, reactor):
        settings = crawler.settings
        policy = AddressPolicy.build(
            allow_private=settings.getbool("GENCOMP_ALLOW_PRIVATE"),
            allowed_networks=settings.getlist("GENCOMP_ALLOWED_NETWORKS"),
        )
        return cls(reactor, policy, settings.getdict("GENCOMP_RESOLVE"))

    def install_on_reactor(self) -> None:
        global _installed
        self.reactor.installNameResolver(self.resolver)
        _installed = self.resolver


_installed = None  # the guarded resolver this process installed (GuardedResolver.install_on_reactor)


def guarded_resolver_installed(reactor) -> bool:
    """True when ``reactor`` resolves names through the guarded resolver (what every connection uses)."""
    return _installed is not None and reactor.nameResolver is _installed
