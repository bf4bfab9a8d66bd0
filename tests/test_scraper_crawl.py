"""End-to-end crawl of a loopback test site: every markup case and every failure case gets its manifest row.

One crawl (a ``python -m scraper.crawl`` subprocess, as the flow runs it) serves the whole module.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import pandas as pd
import pytest

from scraper.crawl import build_command
from tests.conftest import REPO
from tests.scraper_site import (
    SVG,
    LoopbackSite,
    Route,
    animated_gif,
    cmyk_jpeg,
    exif_rotated_jpeg,
    image,
    jpeg,
    page,
    png,
    png16,
    png_bomb,
)

MAX_BYTES = 150_000
TIMEOUT_S = 2.0
SLOW_S = 3.5

# path -> body of every image that must be stored (distinct content each)
GOOD = {
    "/img/plain.jpg": jpeg(1),
    "/img/srcset-w-large.jpg": jpeg(2, 96, 72),
    "/img/srcset-x-3x.jpg": jpeg(3, 96, 72),
    "/img/picture-800.jpg": jpeg(4, 80, 60),
    "/img/lazy-data-src.jpg": jpeg(5),
    "/img/lazy-data-srcset-big.jpg": jpeg(6),
    "/img/lazy-data-lazy-src.jpg": jpeg(7),
    "/img/lazy-data-original.jpg": jpeg(8),
    "/img/full.jpg": jpeg(9, 120, 90),
    "/img/og.jpg": jpeg(10),
    "/img/twitter.jpg": jpeg(11),
    "/img/css-bg.png": png(12),
    "/assets/based.jpg": jpeg(13),
    "/img/rel.jpg": jpeg(14),
    "/img/proto.jpg": jpeg(15),
    "/img/on-error-page.jpg": jpeg(16),
    "/img/after-429.jpg": jpeg(17),
    "/img/cmyk.jpg": cmyk_jpeg(18),
    "/img/grey16.png": png16(19),
    "/img/exif6.jpg": exif_rotated_jpeg(20, 60, 20),
    "/img/anim.gif": animated_gif(21),
    "/img/shared-1.jpg": jpeg(22),
    "/img/query.jpg?a=1&b=2": jpeg(23),
    "/deep/two.jpg": jpeg(24),
}
REDIRECT_TARGET = jpeg(25)  # served at /redirected/target.jpg, linked as /img/redirect-ok.jpg (301)
SAME_CONTENT = jpeg(30)
# URLs on the pages that a correct crawler never requests
NEVER_REQUESTED = [
    "/img/srcset-w-small.jpg",
    "/img/srcset-w-mid.jpg",
    "/img/srcset-x-1x.jpg",
    "/img/picture-400.jpg",
    "/img/picture-fallback.jpg",
    "/img/placeholder.gif",
    "/img/thumb.jpg",
    "/private/secret.jpg",
    "/deep/three.html",
    "/deep/three.jpg",
]


def build_routes(site: LoopbackSite, offsite: LoopbackSite) -> None:
    r = site.routes
    for path, body in GOOD.items():
        r[path] = image(body, "image/png" if path.endswith(".png") else "image/jpeg")
    r["/img/anim.gif"] = image(GOOD["/img/anim.gif"], "image/gif")
    r["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    r["/private/secret.jpg"] = image(jpeg(99))
    pages = {
        "/markup/img-src.html": page('<img src="/img/plain.jpg"><img src="/img/plain.jpg#again">'),
        "/markup/srcset-w.html": page(
            '<img src="/img/srcset-w-small.jpg" srcset="/img/srcset-w-small.jpg 100w, '
            '/img/srcset-w-large.jpg 400w, /img/srcset-w-mid.jpg 200w">'
        ),
        "/markup/srcset-x.html": page('<img src="/img/srcset-x-1x.jpg" srcset="/img/srcset-x-3x.jpg 3x, /img/srcset-x-1x.jpg 1x">'),
        "/markup/picture.html": page(
            '<picture><source type="image/jpeg" srcset="/img/picture-400.jpg 400w, /img/picture-800.jpg 800w">'
            '<img src="/img/picture-fallback.jpg"></picture>'
        ),
        "/markup/lazy.html": page(
            '<img src="/img/placeholder.gif" data-src="/img/lazy-data-src.jpg">'
            '<img src="/img/placeholder.gif" data-srcset="/img/lazy-data-srcset-big.jpg 900w, /img/thumb.jpg 90w">'
            '<img src="/img/placeholder.gif" data-lazy-src="/img/lazy-data-lazy-src.jpg">'
            '<img src="/img/placeholder.gif" data-original="/img/lazy-data-original.jpg">'
        ),
        "/markup/link.html": page('<a href="/img/full.jpg"><img src="/img/thumb.jpg" srcset="/img/thumb.jpg 90w"></a>'),
        "/markup/meta.html": page(
            "<p>meta</p>",
            head='<meta property="og:image" content="/img/og.jpg"><meta name="twitter:image" content="/img/twitter.jpg">'
            '<link rel="license" href="https://creativecommons.org/licenses/by/4.0/">',
        ),
        "/markup/css.html": page("<div style=\"width:10px;background-image: url('/img/css-bg.png')\"></div>"),
        "/markup/base.html": page('<img src="based.jpg">', head='<base href="/assets/">'),
        "/markup/sub/relative.html": page(
            f'<img src="../../img/rel.jpg"><img src="//127.0.0.1:{site.port}/img/proto.jpg">'
        ),
        "/markup/query.html": page('<img src="/img/query.jpg?b=2&a=1"><img src="/img/query.jpg?a=1&b=2#x">'),
        "/cases/errors.html": page(
            "".join(
                f'<img src="{p}">'
                for p in [
                    "/img/on-error-page.jpg", "/img/missing.jpg", "/img/always-500.jpg", "/img/after-429.jpg",
                    "/img/slow.jpg", "/img/loop-a.jpg", "/img/offsite-redirect.jpg", "/img/html.jpg",
                    "/img/truncated.jpg", "/img/bomb.png", "/img/too-big.jpg", "/img/stream-too-big.jpg",
                    "/img/vector.svg", "/img/cmyk.jpg", "/img/grey16.png", "/img/exif6.jpg", "/img/anim.gif",
                    "/img/tiny.png", "/private/secret.jpg", "/img/redirect-ok.jpg",
                    f"http://{offsite.host}:{offsite.port}/img/elsewhere.jpg",
                ]
            )
        ),
        "/cases/dup-a.html": page('<img src="/img/shared-1.jpg"><img src="/img/same-a.jpg">'),
        "/cases/dup-b.html": page('<img src="/img/shared-1.jpg"><img src="/img/same-b.jpg">'),
        "/deep/one.html": page('<a href="/deep/two.html">two</a>'),
        "/deep/two.html": page('<img src="/deep/two.jpg"><a href="/deep/three.html">three</a>'),
        "/deep/three.html": page('<img src="/deep/three.jpg">'),
    }
    r.update(pages)
    links = "".join(f'<a href="{p}">{p}</a>' for p in pages if not p.startswith("/deep/t"))
    r["/index.html"] = page(links + f'<a href="http://{offsite.host}:{offsite.port}/offsite-page.html">away</a>')
    r["/img/same-a.jpg"] = image(SAME_CONTENT)
    r["/img/same-b.jpg"] = image(SAME_CONTENT)
    r["/img/always-500.jpg"] = Route(b"boom", status=500)
    r["/img/after-429.jpg"] = Route(
        handler=lambda n: Route(b"slow down", status=429, headers={"Retry-After": "1"})
        if n == 1
        else image(GOOD["/img/after-429.jpg"])
    )
    r["/img/slow.jpg"] = image(jpeg(40), delay_s=SLOW_S)
    r["/img/loop-a.jpg"] = Route(status=302, headers={"Location": "/img/loop-b.jpg"})
    r["/img/loop-b.jpg"] = Route(status=302, headers={"Location": "/img/loop-a.jpg"})
    r["/img/offsite-redirect.jpg"] = Route(
        status=302, headers={"Location": f"http://{offsite.host}:{offsite.port}/img/elsewhere.jpg"}
    )
    r["/img/redirect-ok.jpg"] = Route(status=301, headers={"Location": "/redirected/target.jpg"})
    r["/redirected/target.jpg"] = image(REDIRECT_TARGET)
    r["/img/html.jpg"] = Route(b"<!DOCTYPE html><html><body>nope</body></html>", content_type="image/jpeg")
    r["/img/truncated.jpg"] = image(jpeg(41, 200, 150)[:2000])
    r["/img/bomb.png"] = image(png_bomb(), "image/png")
    r["/img/too-big.jpg"] = image(b"\xff\xd8" + bytes(MAX_BYTES + 10_000))
    r["/img/stream-too-big.jpg"] = image(b"\xff\xd8" + bytes(MAX_BYTES + 10_000), send_length=False)
    r["/img/vector.svg"] = image(SVG, "image/svg+xml")
    r["/img/tiny.png"] = image(png(42, 4, 4), "image/png")
    offsite.routes["/img/elsewhere.jpg"] = image(jpeg(43))
    offsite.routes["/offsite-page.html"] = page('<img src="/img/elsewhere.jpg">')


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    with LoopbackSite() as site, LoopbackSite(host="127.0.0.2") as offsite:
        build_routes(site, offsite)
        cmd = build_command(
            out=out,
            start_urls=[site.base_url + "/index.html"],
            depth=2,
            min_width=8,
            min_height=8,
            timeout=TIMEOUT_S,
            max_bytes=MAX_BYTES,
            download_delay=0,
            retries=1,
            workers=1,
            concurrency_per_domain=8,
            allowed_networks=["127.0.0.1/32"],  # the test site; nothing else private
        )
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        manifest = pd.read_parquet(out / "manifest.parquet")
        yield {"out": out, "site": site, "offsite": offsite, "manifest": manifest, "stdout": proc.stdout}


def row(crawl, path: str) -> pd.Series:
    url = crawl["site"].base_url + path
    rows = crawl["manifest"]
    rows = rows[(rows["url"] == url) & (rows["status"] != "duplicate_url")]
    assert len(rows) == 1, f"expected one row for {url}, got {len(rows)}:\n{crawl['manifest'][['url', 'status']]}"
    return rows.iloc[0]


def test_summary_line_and_progress(crawl):
    lines = crawl["stdout"].strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["status"] == "ok"
    # + the redirected image + one of the two same-content URLs
    assert summary["images_stored"] == len(GOOD) + 2
    assert any(line.startswith("progress: ") for line in lines)


@pytest.mark.parametrize("path", sorted(GOOD))
def test_good_images_stored_as_original_bytes(crawl, path):
    r = row(crawl, path)
    assert r["status"] == "ok", r["error"]
    body = GOOD[path]
    sha = hashlib.sha256(body).hexdigest()
    assert r["sha256"] == sha
    ext = {"JPEG": "jpg", "PNG": "png", "GIF": "gif"}[r["format"]]
    assert r["path"] == f"images/{sha[:2]}/{sha}.{ext}"
    assert (crawl["out"] / r["path"]).read_bytes() == body
    assert r["bytes"] == len(body) and r["http_status"] == 200 and r["kind"] == "image"
    assert r["page_url"].startswith(crawl["site"].base_url)
    assert r["fetched_at"].tzinfo is not None


def test_never_requested(crawl):
    site = crawl["site"]
    for path in NEVER_REQUESTED:
        assert site.requested(path) == [], f"{path} was requested"
    assert crawl["offsite"].requests == [], "a request left allowed_domains"


@pytest.mark.parametrize(
    "path, status, http_status",
    [
        ("/img/missing.jpg", "http_404", 404),
        ("/img/always-500.jpg", "http_5xx", 500),
        ("/img/slow.jpg", "timeout", 0),
        ("/img/loop-a.jpg", "too_many_redirects", 0),
        ("/img/offsite-redirect.jpg", "offsite_redirect", 0),
        ("/img/html.jpg", "not_an_image", 200),
        ("/img/truncated.jpg", "truncated", 200),
        ("/img/bomb.png", "too_large", 200),
        ("/img/too-big.jpg", "too_large_bytes", 0),
        ("/img/stream-too-big.jpg", "too_large_bytes", 0),
        ("/img/vector.svg", "not_an_image", 200),
        ("/img/tiny.png", "too_small", 200),
        ("/private/secret.jpg", "robots", 0),
    ],
)
def test_failure_rows(crawl, path, status, http_status):
    r = row(crawl, path)
    assert r["status"] == status, f"{path}: {r['status']} ({r['error']})"
    assert r["http_status"] == http_status
    assert r["path"] == "" and r["error"] != ""
    assert r["page_url"] == crawl["site"].base_url + "/cases/errors.html"


def test_offsite_image_recorded_not_fetched(crawl):
    offsite = crawl["offsite"]
    rows = crawl["manifest"]
    r = rows[rows["url"] == f"http://{offsite.host}:{offsite.port}/img/elsewhere.jpg"]
    assert list(r["status"]) == ["offsite"]


def test_retries_500_then_gives_up(crawl):
    assert len(crawl["site"].requested("/img/always-500.jpg")) == 2  # first try + --retries 1


def test_429_retried_after_retry_after(crawl):
    hits = crawl["site"].requested("/img/after-429.jpg")
    assert len(hits) == 2
    assert hits[1].at - hits[0].at >= 0.9  # Retry-After: 1 was honoured


def test_redirect_within_domain_followed(crawl):
    r = row(crawl, "/img/redirect-ok.jpg")
    assert r["status"] == "ok" and r["sha256"] == hashlib.sha256(REDIRECT_TARGET).hexdigest()


def test_image_normalisation_metadata(crawl):
    assert (row(crawl, "/img/exif6.jpg")[["width", "height"]] == [20, 60]).all()  # as displayed
    gif = row(crawl, "/img/anim.gif")
    assert gif["format"] == "GIF" and gif["frames"] == 3
    assert row(crawl, "/img/cmyk.jpg")["format"] == "JPEG"
    assert row(crawl, "/img/grey16.png")["format"] == "PNG"


def test_one_fetch_per_canonical_url(crawl):
    site = crawl["site"]
    assert len(site.requested("/img/plain.jpg")) == 1  # also linked as plain.jpg#again
    assert len(site.requested("/img/query.jpg?a=1&b=2")) == 1  # also as ?b=2&a=1
    assert len(site.requested("/img/shared-1.jpg")) == 1  # on two pages
    rows = crawl["manifest"]
    shared = rows[rows["url"] == site.base_url + "/img/shared-1.jpg"]
    assert sorted(shared["status"]) == ["duplicate_url", "ok"]


def test_same_content_two_urls_stored_once(crawl):
    a, b = row(crawl, "/img/same-a.jpg"), row(crawl, "/img/same-b.jpg")
    assert sorted([a["status"], b["status"]]) == ["duplicate_content", "ok"]
    assert a["sha256"] == b["sha256"] and a["path"] == b["path"] != ""
    assert len(list((crawl["out"] / "images").rglob(f"{a['sha256']}.*"))) == 1


def test_license_hint_from_page(crawl):
    assert row(crawl, "/img/og.jpg")["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert row(crawl, "/img/plain.jpg")["license"] == ""


def test_depth_limit(crawl):
    # index (0) -> deep/one (1) -> deep/two (2): its image is fetched, its link to depth 3 is not followed.
    assert crawl["site"].requested("/deep/two.html")
    assert row(crawl, "/deep/two.jpg")["status"] == "ok"


def test_no_temp_files_left(crawl):
    leftovers = [p for p in crawl["out"].rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []


def test_requests_waiting_together_for_robots_txt_all_obey_it(tmp_path):
    # A slow robots.txt and several start pages: every request parks on the one robots.txt fetch of the host.
    # Scrapy's own middleware handed the parser to the first of them only; the others went out unchecked.
    private = [f"/private/p{i}.html" for i in range(6)]
    with LoopbackSite() as site:
        r = site.routes
        r["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain", delay_s=0.5)
        r["/open.html"] = page('<img src="/img/a.jpg"><img src="/private/b.jpg">')
        r["/img/a.jpg"] = image(jpeg(71))
        r["/private/b.jpg"] = image(jpeg(72))
        for path in private:
            r[path] = page('<img src="/img/a.jpg">')
        cmd = build_command(
            out=tmp_path / "raw", start_urls=[site.base_url + p for p in [private[0], "/open.html", *private[1:]]],
            depth=1, timeout=TIMEOUT_S, download_delay=0, retries=0, workers=1, concurrency_per_domain=8,
            allowed_networks=["127.0.0.1/32"],
        )
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        requested = [req.path for req in site.requests]
    assert requested.count("/robots.txt") == 1
    assert [p for p in requested if p.startswith("/private/")] == []
    assert "/open.html" in requested and "/img/a.jpg" in requested
    manifest = pd.read_parquet(tmp_path / "raw" / "manifest.parquet")
    assert manifest.loc[manifest["url"] == site.base_url + "/private/b.jpg", "status"].tolist() == ["robots"]
