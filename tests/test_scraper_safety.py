"""Crawl safety: a hostile site cannot steer the crawler to other ports, internal hosts or private addresses.

The end-to-end test serves a hostile site on 127.0.0.1 and an "internal" service on another port of 127.0.0.1.
Names are answered by the crawl's own ``--resolve`` (no DNS): subdomains of the site point at 169.254.169.254,
10.x and IPv6 private addresses. The crawl runs inside tests/scraper_site/netjail.py, which refuses and records
any connection or lookup that is not to 127.0.0.1, so nothing is ever sent anywhere else even if a check
failed. Asserted: the internal service got no request, the jail recorded nothing, and every refusal has its
manifest row.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess

import pandas as pd
import pytest

from scraper.crawl import build_command
from scraper.extract import canonical_url
from scraper.netguard import (
    REFUSALS,
    AddressPolicy,
    DomainRule,
    GuardedGetaddrinfo,
    OriginPolicy,
    address_problem,
    parse_resolve_overrides,
    refusal_for_host,
)
from tests.conftest import REPO
from tests.scraper_site import LoopbackSite, Route, image, jpeg, page
from tests.scraper_site.netjail import jailed

# -- addresses --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, problem",
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private"),  # reserved class E; Python files it under is_private
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),  # documentation range
        ("fec0::1", "site-local"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside IPv6)"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:169.254.169.254", "link-local (IPv4 169.254.169.254 inside IPv6)"),
        ("2002:a9fe:a9fe::1", "link-local (IPv4 169.254.169.254 inside IPv6)"),  # 6to4
        ("64:ff9b::a00:1", "private (IPv4 10.0.0.1 inside IPv6)"),  # NAT64
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_problem(address, problem):
    got = address_problem(address)
    if problem is None:
        assert got is None
    else:
        assert got is not None and got.startswith(problem.split(" (")[0]), got
        if "inside IPv6" in problem:
            assert got == problem


def test_address_policy_allows_only_what_it_is_told():
    strict = AddressPolicy.build()
    assert strict.refusal("8.8.8.8") is None
    assert "loopback" in strict.refusal("127.0.0.1")
    loopback_only = AddressPolicy.build(allowed_networks=["127.0.0.1/32"])
    assert loopback_only.refusal("127.0.0.1") is None
    assert loopback_only.refusal("::ffff:127.0.0.1") is None  # the same address, IPv4-mapped
    assert loopback_only.refusal("127.0.0.2") is not None
    assert loopback_only.refusal("10.0.0.1") is not None and loopback_only.refusal("::1") is not None
    assert AddressPolicy.build(allow_private=True).refusal("169.254.169.254") is None


# -- origins ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://site.test:8000/a.jpg", True),
        ("http://site.test:8001/a.jpg", False),  # another port of the start URL's host
        ("https://site.test:8000/a.jpg", False),  # another scheme on a non-default port
        ("http://sub.site.test:8000/a.jpg", False),  # start URLs' hosts do not extend to subdomains
        ("http://127.0.0.1:8000/a.jpg", False),  # the same server by address is another origin
        ("http://example.com/a", True),
        ("https://example.com/a", True),  # the http -> https upgrade of a default-port start URL
        ("http://example.com:8080/a", False),
        ("http://www.example.com/a", False),  # not listed: www is a subdomain like any other
        ("http://cdn.photos.org/a.jpg", True),  # listed parent: subdomains allowed, default ports
        ("https://photos.org/a.jpg", True),
        ("http://cdn.photos.org:81/a.jpg", False),
        ("http://notphotos.org/a.jpg", False),
        ("http://photos.org.evil.net/a.jpg", False),
        ("http://img.alt.net:8443/a.jpg", True),  # listed with a port: that port only
        ("http://img.alt.net/a.jpg", False),
        ("https://secure.net/a", True),  # listed with a scheme: that scheme only
        ("http://secure.net/a", False),
        ("ftp://example.com/a", False),
        ("http://example.com:99999/a", False),
    ],
)
def test_origin_policy(url, allowed):
    policy = OriginPolicy(
        ["http://site.test:8000/index.html", "http://example.com/"],
        ["photos.org", "alt.net:8443", "https://secure.net"],
    )
    assert policy.allows(url) is allowed


@pytest.mark.parametrize(
    "entry", ["example.com/path", "ftp://example.com", "example.com:notaport", "", "user@example.com", "a.com#x"]
)
def test_domain_rule_rejects_malformed_entries(entry):
    with pytest.raises(ValueError):
        DomainRule.parse(entry)


# -- the resolver -----------------------------------------------------------------------------------------------


def _answers(*addresses: str):
    """A fake getaddrinfo answering the given addresses (one per call when given as a list of calls)."""

    def lookup(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        out = []
        for a in addresses:
            ip = ipaddress.ip_address(a)
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            out.append((fam, socket.SOCK_STREAM, 6, "", (a, port, 0, 0) if ip.version == 6 else (a, port)))
        return out

    return lookup


def test_resolver_drops_refused_addresses_and_records_why():
    policy = AddressPolicy.build()
    mixed = GuardedGetaddrinfo(policy, lookup=_answers("93.184.215.14", "10.0.0.5"))
    assert [r[4][0] for r in mixed("mixed.test", 80)] == ["93.184.215.14"]
    assert refusal_for_host("mixed.test") is None
    internal = GuardedGetaddrinfo(policy, lookup=_answers("169.254.169.254", "fd00::1"))
    assert internal("Metadata.Test.", 80) == []
    assert "169.254.169.254 is link-local" in refusal_for_host("metadata.test")


def test_resolver_checks_every_connection_so_rebinding_cannot_pass():
    # A name that answers a public address once, then an internal one (DNS rebinding): each connection resolves
    # through the guard again, so the second answer is refused however the first went.
    answers = iter([_answers("93.184.215.14"), _answers("169.254.169.254")])
    guard = GuardedGetaddrinfo(AddressPolicy.build(), lookup=lambda *a, **k: next(answers)(*a, **k))
    assert [r[4][0] for r in guard("rebind.test", 80)] == ["93.184.215.14"]
    assert guard("rebind.test", 80) == []
    assert "link-local" in REFUSALS["rebind.test"]


def test_resolve_overrides_answer_without_dns_and_are_checked():
    overrides = parse_resolve_overrides(["site.test=127.0.0.1", "*.site.test=10.0.0.5", "v6.test=::1"])

    def no_dns(*args, **kwargs):
        raise AssertionError("DNS was asked")

    guard = GuardedGetaddrinfo(AddressPolicy.build(allowed_networks=["127.0.0.1/32"]), overrides, lookup=no_dns)
    assert guard("site.test", 80)[0][4] == ("127.0.0.1", 80)
    assert guard("deep.db.site.test", 80) == [] and "10.0.0.5 is private" in refusal_for_host("deep.db.site.test")
    assert guard("v6.test", 443) == []
    with pytest.raises(ValueError):
        parse_resolve_overrides(["site.test=not-an-ip"])


# -- the hostile site, end to end -------------------------------------------------------------------------------

# Names the crawl resolves through --resolve, never DNS.
RESOLVE = [
    "site.test=127.0.0.1",
    "loop.site.test=127.0.0.1",  # a listed parent's subdomain on an allowed address: fetched
    "meta.site.test=169.254.169.254",
    "db.site.test=10.0.0.5",
    "mapped.site.test=::ffff:10.0.0.7",
    "ula.site.test=fd00::5",
    "other.test=127.0.0.1",  # not listed: another origin although the same server
]


def build_hostile_routes(site: LoopbackSite, internal: LoopbackSite) -> dict[str, str]:
    """The site's routes; returns URL -> the manifest status the crawl must record for it."""
    p, q = site.port, internal.port
    base = f"http://site.test:{p}"
    expected = {
        f"{base}/img/ok.jpg": "ok",
        f"http://loop.site.test:{p}/img/sub.jpg": "ok",
        f"http://site.test:{q}/secret.jpg": "offsite",  # same host, the internal port
        f"http://127.0.0.1:{q}/secret.jpg": "offsite",
        f"http://other.test:{p}/img/other.jpg": "offsite",
        "http://169.254.169.254/latest/meta-data/iam.jpg": "offsite",
        f"http://[::ffff:a9fe:a9fe]:{p}/x.jpg": "offsite",
        f"http://meta.site.test:{p}/latest/meta-data.jpg": "blocked_private_address",
        f"http://db.site.test:{p}/dump.jpg": "blocked_private_address",
        f"http://mapped.site.test:{p}/x.jpg": "blocked_private_address",
        f"http://ula.site.test:{p}/x.jpg": "blocked_private_address",
        "http://10.0.0.9/listed-literal.jpg": "blocked_private_address",  # listed, still a private address
        f"{base}/r/other-port.jpg": "offsite_redirect",
        f"{base}/r/literal.jpg": "offsite_redirect",
        f"{base}/r/metadata.jpg": "blocked_private_address",  # redirect within the origins, to an internal name
    }
    expected = {canonical_url(u): status for u, status in expected.items()}  # manifest URLs are canonical
    images = "".join(f'<img src="{u}">' for u in expected)
    links = "".join(
        f'<a href="{u}">x</a>'
        for u in [
            f"http://site.test:{q}/admin.html",
            f"http://127.0.0.1:{q}/admin.html",
            f"http://other.test:{p}/page.html",
            f"http://db.site.test:{p}/page.html",  # allowed origin, internal address: a page row
            f"{base}/r/page.html",  # redirects to the internal port: a page row
        ]
    )
    site.routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", content_type="text/plain")
    site.routes["/index.html"] = page(images + links)
    site.routes["/img/ok.jpg"] = image(jpeg(1))
    site.routes["/img/sub.jpg"] = image(jpeg(2))
    site.routes["/img/other.jpg"] = image(jpeg(3))
    site.routes["/r/other-port.jpg"] = Route(status=302, headers={"Location": f"http://site.test:{q}/secret.jpg"})
    site.routes["/r/literal.jpg"] = Route(status=302, headers={"Location": "http://169.254.169.254/latest/"})
    site.routes["/r/metadata.jpg"] = Route(
        status=301, headers={"Location": f"http://meta.site.test:{p}/latest/meta-data/"}
    )
    site.routes["/r/page.html"] = Route(status=302, headers={"Location": f"http://127.0.0.1:{q}/admin.html"})
    for path in ("/secret.jpg", "/admin.html", "/robots.txt"):
        internal.routes[path] = image(jpeg(9))
    return expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    jail_log = out.parent / f"{out.name}-netjail.jsonl"
    jail_log.write_text("")
    with LoopbackSite() as site, LoopbackSite() as internal:
        expected = build_hostile_routes(site, internal)
        cmd = build_command(
            out=out,
            start_urls=[f"http://site.test:{site.port}/index.html"],
            allowed_domains=[f"site.test:{site.port}", "10.0.0.9"],
            allowed_networks=["127.0.0.1/32"],
            resolve=RESOLVE,
            depth=2,
            min_width=8,
            min_height=8,
            download_delay=0,
            timeout=3,
            retries=2,
            workers=1,
        )
        proc = subprocess.run(
            jailed(cmd), cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "GENCOMP_NETJAIL_LOG": str(jail_log)},
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        yield {
            "site": site, "internal": internal, "expected": expected, "proc": proc,
            "manifest": pd.read_parquet(out / "manifest.parquet"),
            "jail": [json.loads(line) for line in jail_log.read_text().splitlines()],
        }


def test_nothing_left_127_0_0_1(hostile):
    assert hostile["jail"] == [], "the crawl tried to reach another address or asked DNS"


def test_internal_service_got_no_request(hostile):
    assert hostile["internal"].requests == []


def test_site_saw_only_allowed_hosts(hostile):
    port = hostile["site"].port
    hosts = {r.headers.get("Host") for r in hostile["site"].requests}
    assert hosts <= {f"site.test:{port}", f"loop.site.test:{port}"}, hosts


def test_every_refusal_has_its_row(hostile):
    manifest = hostile["manifest"]
    images = manifest[manifest["kind"] == "image"].set_index("url")
    for url, status in hostile["expected"].items():
        assert url in images.index, f"no row for {url}:\n{manifest[['url', 'status']]}"
        row = images.loc[url]
        assert row["status"] == status, f"{url}: {row['status']} ({row['error']})"
        if status != "ok":
            assert row["error"] and row["path"] == "" and row["http_status"] in (0, 301, 302)
    meta = images.loc[f"http://meta.site.test:{hostile['site'].port}/latest/meta-data.jpg"]
    assert "169.254.169.254 is link-local" in meta["error"]


def test_refused_pages_have_rows_and_offsite_links_are_not_followed(hostile):
    manifest, p = hostile["manifest"], hostile["site"].port
    pages = manifest[manifest["kind"] == "page"].set_index("url")["status"].to_dict()
    assert pages == {
        f"http://db.site.test:{p}/page.html": "blocked_private_address",
        f"http://site.test:{p}/r/page.html": "offsite_redirect",
    }


def test_default_refuses_loopback_start_url(tmp_path):
    jail_log = tmp_path / "netjail.jsonl"
    jail_log.write_text("")
    with LoopbackSite() as site:
        site.routes["/index.html"] = page('<img src="/a.jpg">')
        site.routes["/a.jpg"] = image(jpeg(4))
        cmd = build_command(out=tmp_path / "out", start_urls=[site.base_url + "/index.html"], download_delay=0,
                            timeout=3, retries=2, workers=1)
        proc = subprocess.run(jailed(cmd), cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GENCOMP_NETJAIL_LOG": str(jail_log)})
        assert site.requests == []
    assert proc.returncode == 1 and "--allow-network" in proc.stderr, proc.stderr[-2000:]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert manifest[["kind", "status"]].values.tolist() == [["page", "blocked_private_address"]]
    assert "127.0.0.1 is loopback" in manifest["error"].iloc[0]
    assert jail_log.read_text() == ""


# -- the middlewares, one request at a time ---------------------------------------------------------------------


def _guard_crawler(**settings):
    from types import SimpleNamespace

    from scrapy.settings import Settings

    spider = SimpleNamespace(origins=OriginPolicy(["http://site.test:8000/"], ["10.0.0.9", "cdn.example.com"]))
    return SimpleNamespace(spider=spider, settings=Settings({"GENCOMP_ALLOWED_NETWORKS": [], **settings}))


@pytest.mark.parametrize(
    "url, status",
    [
        ("http://site.test:8000/a.jpg", None),
        ("http://img.cdn.example.com/a.jpg", None),  # host names are checked when connecting (the resolver)
        ("http://site.test:8001/a.jpg", "blocked_origin"),  # e.g. a request injected into a shared queue
        ("http://169.254.169.254/latest/", "blocked_origin"),
        ("http://10.0.0.9/a.jpg", "blocked_private_address"),  # listed, but a private literal address
    ],
)
def test_origin_guard_checks_every_request(url, status):
    from scrapy import Request

    from scraper.middlewares import OriginGuardMiddleware
    from scraper.spiders.images import classify_failure

    guard = OriginGuardMiddleware(_guard_crawler(), require_guarded_resolver=False)
    if status is None:
        assert guard.process_request(Request(url)) is None
        return
    with pytest.raises(Exception) as refused:
        guard.process_request(Request(url))
    assert classify_failure(refused.value)[0] == status


def test_refused_resolution_is_named_and_not_retried():
    from scrapy import Request
    from scrapy.exceptions import CannotResolveHostError

    from scraper.middlewares import BlockedAddress, RefusedAddressMiddleware
    from scraper.spiders.images import classify_failure

    GuardedGetaddrinfo(AddressPolicy.build(), {"evil.test": "10.0.0.5"})("evil.test", 80)
    middleware = RefusedAddressMiddleware()
    with pytest.raises(BlockedAddress) as refused:
        middleware.process_exception(Request("http://evil.test/x.jpg"), CannotResolveHostError("no results"))
    assert classify_failure(refused.value)[0] == "blocked_private_address"
    assert "10.0.0.5 is private" in str(refused.value)
    # A host that simply does not resolve stays a DNS failure (retried, recorded as connection_error).
    assert middleware.process_exception(Request("http://nxdomain.test/"), CannotResolveHostError("nx")) is None


def test_allow_private_lets_the_guard_pass_literal_addresses():
    from scrapy import Request

    from scraper.middlewares import OriginGuardMiddleware

    guard = OriginGuardMiddleware(_guard_crawler(GENCOMP_ALLOW_PRIVATE=True), require_guarded_resolver=False)
    assert guard.process_request(Request("http://10.0.0.9/a.jpg")) is None


def test_no_fetch_without_the_guarded_resolver():
    from scrapy import Request

    from scraper.middlewares import BlockedAddress, OriginGuardMiddleware

    guard = OriginGuardMiddleware(_guard_crawler())  # this test process never installed the guarded resolver
    with pytest.raises(BlockedAddress, match="guarded resolver"):
        guard.process_request(Request("http://site.test:8000/a.jpg"))
