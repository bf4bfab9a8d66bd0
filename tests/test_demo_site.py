"""The offline demo site: what it publishes, how it is served, and that a crawl of it stores the right photos."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from parsel import Selector
from PIL import Image

from scraper.crawl import build_command
from scraper.demo_site import build_site, serve
from scraper.extract import extract_images, parse_srcset
from tests.conftest import REPO
from tests.scraper_site import jpeg


@pytest.fixture(scope="module")
def extra_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra")
    (root / "a" / "b").mkdir(parents=True)
    for i, rel in enumerate(["one.jpg", "a/two.JPG", "a/b/three.jpeg", "a/notes.txt"]):
        (root / rel).write_bytes(jpeg(70 + i) if not rel.endswith(".txt") else b"not a photo")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory, extra_dir):
    return build_site(tmp_path_factory.mktemp("site"), extra_photo_dirs=[extra_dir], max_extra_photos=2, seed=0)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publishes_package_photos_crops_variants(site):
    names = {Path(p).name for p in site.originals}
    assert {"astronaut.png", "chelsea.png", "china.jpg", "flower.jpg", "grace_hopper.jpg"} <= names
    for rel, source in zip(site.originals, site.sources):
        assert (site.root / rel).read_bytes() == Path(source).read_bytes()  # as-is
    astronaut = [site.root / c for c in site.crops if "/astronaut-q" in c]
    assert len(astronaut) == 4 and all(Image.open(p).size == (256, 256) for p in astronaut)
    assert len({sha(p) for p in astronaut}) == 4
    half = Image.open(site.root / "photos/variants/astronaut-half.jpg")
    assert half.size == (256, 256) and half.format == "JPEG"
    assert len(set(site.expected_ok)) == len(site.expected_ok)
    assert len({sha(site.root / p) for p in site.expected_ok}) == len(site.expected_ok)  # distinct content


def test_extra_photos_recursive_limited_and_as_is(site, extra_dir):
    assert len(site.extras) == 2
    sources = {sha(p) for p in extra_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"}}
    assert {sha(site.root / p) for p in site.extras} <= sources


def test_robots_and_broken_files(site):
    assert "Disallow: /private/" in (site.root / "robots.txt").read_text()
    assert site.private == ("private/secret.jpg",) and (site.root / "private/secret.jpg").stat().st_size > 0
    assert (site.root / "broken/empty.png").stat().st_size == 0
    assert (site.root / "broken/not-really.jpg").read_bytes().lstrip().lower().startswith(b"<!doctype html")
    assert site.broken == {
        "broken/truncated.jpg": "truncated",
        "broken/not-really.jpg": "not_an_image",
        "broken/empty.png": "not_an_image",
    }


def test_gallery_pages_paginated_with_full_size_srcset(site):
    galleries = [p for p in site.pages if p.startswith("gallery/")]
    assert len(galleries) >= 2
    linked_files: set[str] = set()
    saw_wrapped_thumbnail = False
    for i, rel in enumerate(galleries):
        html = (site.root / rel).read_text()
        sel = Selector(text=html)
        nxt = sel.xpath('//a[@rel="next"]/@href').get()
        assert (nxt is None) == (i == len(galleries) - 1)
        for img in sel.xpath("//img[@srcset]"):
            widths = {c.url: c.width for c in parse_srcset(img.attrib["srcset"])}
            largest = max(widths, key=widths.get)
            assert largest.startswith("/photos/full/")
            full = Image.open(site.root / largest.lstrip("/"))
            assert widths[largest] == full.width
            if img.xpath("parent::a/@href").get() == largest:
                saw_wrapped_thumbnail = True
        page_url = f"http://demo.test/{rel}"
        linked_files |= {c.url.removeprefix("http://demo.test/") for c in extract_images(html, page_url)}
    assert saw_wrapped_thumbnail
    expected = set(site.expected_ok) | set(site.broken) | set(site.private)
    assert linked_files == expected  # every file is reachable, no thumbnail is the chosen candidate


def test_serve_content_types_etag_and_404(site):
    with serve(site.root) as base:
        for rel, ctype in [("index.html", "text/html"), (site.originals[0], "image/"), ("broken/not-really.jpg", "image/jpeg")]:
            with urllib.request.urlopen(f"{base}/{rel}") as resp:
                assert resp.headers["Content-Type"].startswith(ctype)
                etag = resp.headers["ETag"]
        req = urllib.request.Request(f"{base}/broken/not-really.jpg", headers={"If-None-Match": etag})
        with pytest.raises(urllib.error.HTTPError) as not_modified:
            urllib.request.urlopen(req)
        assert not_modified.value.code == 304
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nope.jpg")
        assert missing.value.code == 404


def test_build_rejects_missing_extra_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_site(tmp_path / "s", extra_photo_dirs=[tmp_path / "absent"])


def test_demo_site_crawl_stores_expected_photos(site, extra_dir, tmp_path):
    out = tmp_path / "out"
    cmd = build_command(
        out=out, demo_site=True, extra_photo_dirs=[extra_dir], max_extra_photos=2, download_delay=0, workers=1,
        timeout=5, retries=0,
    )
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = pd.read_parquet(out / "manifest.parquet")
    ok = manifest[manifest["status"] == "ok"]
    # The crawl's own build is deterministic: it stores exactly the files of this build.
    assert set(ok["sha256"]) == {sha(site.root / p) for p in site.expected_ok}
    assert summary["images_stored"] == len(site.expected_ok)
    for stored in ok["path"]:
        assert (out / stored).is_file()
    by_path = {url.split("/", 3)[3]: status for url, status in zip(manifest["url"], manifest["status"])}
    for rel, status in site.broken.items():
        assert by_path[rel] == status
    assert by_path["private/secret.jpg"] == "robots"
    thumbs = {sha(site.root / t) for t in site.thumbnails}
    assert not thumbs & set(manifest["sha256"])
