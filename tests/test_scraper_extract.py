"""Markup -> image URL candidates, links and licence hints (pure functions, no network)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from scraper.extract import (
    canonical_url,
    extract_images,
    extract_links,
    largest_srcset_candidate,
    license_hint,
    parse_srcset,
)
from scraper.middlewares import parse_retry_after

PAGE = "http://example.com/gallery/page.html"


def urls(html: str, page: str = PAGE) -> list[str]:
    return [c.url for c in extract_images(html, page)]


def test_img_src_relative_and_root_relative():
    assert urls('<img src="a.jpg"><img src="/b.png"><img src="../c.gif">') == [
        "http://example.com/gallery/a.jpg",
        "http://example.com/b.png",
        "http://example.com/c.gif",
    ]


def test_protocol_relative_url_takes_page_scheme():
    assert urls('<img src="//cdn.example.com/x.jpg">', "https://example.com/") == ["https://cdn.example.com/x.jpg"]


def test_base_href_changes_resolution():
    html = '<html><head><base href="/static/img/"></head><body><img src="x.jpg"><a href="y.png">y</a></body></html>'
    assert urls(html) == ["http://example.com/static/img/x.jpg", "http://example.com/static/img/y.png"]


def test_srcset_width_descriptors_pick_widest():
    html = '<img src="s.jpg" srcset="s.jpg 300w, xl.jpg 1200w, m.jpg 600w">'
    assert urls(html) == ["http://example.com/gallery/xl.jpg"]


def test_srcset_density_descriptors_pick_highest_and_src_is_1x():
    assert urls('<img src="one.jpg" srcset="two.jpg 2x, half.jpg 0.5x">') == ["http://example.com/gallery/two.jpg"]
    assert urls('<img src="one.jpg" srcset="half.jpg 0.5x">') == ["http://example.com/gallery/one.jpg"]


def test_srcset_urls_with_commas():
    cands = parse_srcset("https://cdn/img/w_100,h_80/a.jpg 100w, https://cdn/img/w_400,h_320/a.jpg 400w")
    assert [c.url for c in cands] == ["https://cdn/img/w_100,h_80/a.jpg", "https://cdn/img/w_400,h_320/a.jpg"]
    assert largest_srcset_candidate(cands).width == 400


def test_srcset_invalid_descriptors_skipped():
    cands = parse_srcset("a.jpg 100w 2x, b.jpg foo, c.jpg 50w, d.jpg")
    assert [(c.url, c.width, c.density) for c in cands] == [("c.jpg", 50, None), ("d.jpg", None, None)]


@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}\.jpg", fullmatch=True), st.integers(1, 5000)), min_size=1))
def test_srcset_roundtrip_largest_width(pairs):
    value = ", ".join(f"{u} {w}w" for u, w in pairs)
    cands = parse_srcset(value)
    assert [(c.url, c.width) for c in cands] == pairs
    assert largest_srcset_candidate(cands).width == max(w for _, w in pairs)


def test_picture_sources_widest_wins_over_img_fallback():
    html = (
        '<picture><source type="image/avif" srcset="a-800.avif 800w, a-1600.avif 1600w">'
        '<source srcset="a-800.jpg 800w"><img src="a-fallback.jpg"></picture>'
    )
    assert urls(html) == ["http://example.com/gallery/a-1600.avif"]


def test_lazy_attributes_beat_placeholder_src():
    html = (
        '<img src="data:image/gif;base64,R0lGOD" data-src="real1.jpg">'
        '<img src="ph.gif" data-lazy-src="real2.jpg">'
        '<img src="ph.gif" data-original="real3.jpg">'
        '<img src="ph.gif" data-srcset="r4-small.jpg 100w, r4-big.jpg 800w" data-src="r4-mid.jpg">'
    )
    assert urls(html) == [f"http://example.com/gallery/{n}" for n in ["real1.jpg", "real2.jpg", "real3.jpg", "r4-big.jpg"]]


def test_link_to_full_size_preferred_over_thumbnail():
    html = '<a href="/full/big.jpg"><img src="/thumbs/small.jpg" srcset="/thumbs/small.jpg 200w"></a>'
    assert urls(html) == ["http://example.com/full/big.jpg"]


def test_img_inside_link_to_page_is_kept():
    assert urls('<a href="/photo/12"><img src="/t.jpg"></a>') == ["http://example.com/t.jpg"]


def test_og_and_twitter_image_and_css_background():
    html = (
        '<html><head><meta property="og:image" content="https://example.com/og.jpg">'
        '<meta name="twitter:image" content="/tw.png"></head><body>'
        "<div style=\"background-image: url('/bg1.jpg')\"></div>"
        '<section style="background: #000 url(/bg2.webp) no-repeat"></section>'
        '<span style="background-image:url(&quot;/bg3.png&quot;)"></span></body></html>'
    )
    assert urls(html) == [
        "https://example.com/og.jpg",
        "http://example.com/tw.png",
        "http://example.com/bg1.jpg",
        "http://example.com/bg2.webp",
        "http://example.com/bg3.png",
    ]


def test_canonical_dedupe_fragments_and_query_order():
    html = '<img src="x.jpg?b=2&a=1"><img src="x.jpg?a=1&b=2#frag"><a href="x.jpg?a=1&b=2">x</a>'
    assert urls(html) == ["http://example.com/gallery/x.jpg?a=1&b=2"]
    assert canonical_url("HTTP://Example.com/a%7Eb.jpg#x") == canonical_url("http://example.com/a~b.jpg")


def test_non_http_and_empty_references_ignored():
    html = '<img src=""><img src="javascript:void(0)"><img src="data:image/png;base64,AA"><img src="ftp://h/x.jpg">'
    assert urls(html) == []


def test_links_exclude_images_and_dedupe():
    html = '<a href="p2.html">2</a><a href="p2.html#top">2</a><a href="big.jpg">img</a><a href="mailto:a@b">m</a>'
    assert extract_links(html, PAGE) == ["http://example.com/gallery/p2.html"]


def test_license_hint_sources():
    assert license_hint('<link rel="license" href="/lic.html">', PAGE) == "http://example.com/lic.html"
    assert license_hint('<a rel="nofollow license" href="https://cc/by">CC</a>', PAGE) == "https://cc/by"
    assert license_hint('<meta name="dcterms.license" content="CC BY 4.0">', PAGE) == "CC BY 4.0"
    assert license_hint("<p>nothing</p>", PAGE) == ""


def test_retry_after_parsing():
    assert parse_retry_after(b"3") == 3.0
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after(b"soon") is None and parse_retry_after(None) is None
