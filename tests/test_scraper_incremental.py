"""Incremental rescrape: a second crawl into the same folder sends conditional requests, appends rows, keeps
files, and marks images that were stored but are now gone as "vanished"."""

from __future__ import annotations

import hashlib
import subprocess

import pandas as pd
import pytest

from scraper.crawl import build_command
from scraper.demo_site import serve
from scraper.manifest import read_manifest, write_manifest
from tests.conftest import REPO
from tests.scraper_site import jpeg


def _crawl(out, base_url):
    cmd = build_command(
        out=out, start_urls=[base_url + "/index.html"], depth=1, download_delay=0, timeout=3, retries=0, workers=1,
        allowed_networks=["127.0.0.1/32"],
    )
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_parquet(out / "manifest.parquet")


@pytest.fixture(scope="module")
def rescrape(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    out = tmp_path_factory.mktemp("out")
    bodies = {name: jpeg(seed) for seed, name in enumerate(["same.jpg", "gone.jpg", "changed.jpg"], start=50)}
    for name, body in bodies.items():
        (site / name).write_bytes(body)
    (site / "index.html").write_text("".join(f'<img src="/{name}">' for name in bodies))
    with serve(site) as base_url:
        first = _crawl(out, base_url)
        (site / "gone.jpg").unlink()
        changed = jpeg(99)
        (site / "changed.jpg").write_bytes(changed)
        second = _crawl(out, base_url)
    return {"out": out, "base": base_url, "first": first, "second": second, "bodies": bodies, "changed": changed}


def _latest(df, url):
    rows = df[df["url"] == url]
    return rows.iloc[-1]


def test_first_crawl_stores_all(rescrape):
    assert sorted(rescrape["first"]["status"]) == ["ok", "ok", "ok"]


def test_rows_appended_not_replaced(rescrape):
    first, second = rescrape["first"], rescrape["second"]
    assert len(second) == 2 * len(first)
    pd.testing.assert_frame_equal(second.iloc[: len(first)].reset_index(drop=True), first)
    assert second["crawl_id"].nunique() == 2


def test_unchanged_image_not_modified_via_304(rescrape):
    r = _latest(rescrape["second"], rescrape["base"] + "/same.jpg")
    sha = hashlib.sha256(rescrape["bodies"]["same.jpg"]).hexdigest()
    assert r["status"] == "not_modified" and r["http_status"] == 304  # the server saw our If-None-Match
    assert r["sha256"] == sha and (rescrape["out"] / r["path"]).read_bytes() == rescrape["bodies"]["same.jpg"]
    assert r["etag"] != ""


def test_removed_image_vanished_and_file_kept(rescrape):
    r = _latest(rescrape["second"], rescrape["base"] + "/gone.jpg")
    assert r["status"] == "vanished" and r["http_status"] == 404 and r["path"] == ""
    sha = hashlib.sha256(rescrape["bodies"]["gone.jpg"]).hexdigest()
    assert r["sha256"] == sha
    assert list((rescrape["out"] / "images").rglob(f"{sha}.jpg")), "the earlier file must be kept"


def test_changed_image_stored_as_new_content(rescrape):
    r = _latest(rescrape["second"], rescrape["base"] + "/changed.jpg")
    assert r["status"] == "ok" and r["sha256"] == hashlib.sha256(rescrape["changed"]).hexdigest()
    old = hashlib.sha256(rescrape["bodies"]["changed.jpg"]).hexdigest()
    assert list((rescrape["out"] / "images").rglob(f"{old}.jpg")), "the old version stays on disk"


def test_foreign_manifest_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"something": [1, 2]}), tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match="not a crawl manifest"):
        read_manifest(tmp_path)
    cmd = build_command(out=tmp_path, start_urls=["http://127.0.0.1:9/index.html"], retries=0, workers=1)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "not a crawl manifest" in proc.stdout + proc.stderr
    assert pq.read_table(tmp_path / "manifest.parquet").column_names == ["something"]  # nothing lost


def test_write_manifest_roundtrip_and_atomic(tmp_path):
    from scraper.manifest import rows_to_table

    table = rows_to_table([{"url": "http://a/x.jpg", "status": "ok", "width": 3}])
    write_manifest(tmp_path, table)
    back = read_manifest(tmp_path)
    assert back.to_pylist()[0]["width"] == 3 and back.to_pylist()[0]["path"] == ""
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.parquet"]
    with pytest.raises(ValueError, match="unknown manifest columns"):
        rows_to_table([{"url": "u", "status": "ok", "bogus": 1}])


def test_max_images_stops_the_crawl(tmp_path):
    import json

    site, out = tmp_path / "site", tmp_path / "out"
    site.mkdir()
    for i in range(12):
        (site / f"p{i}.jpg").write_bytes(jpeg(200 + i))
    (site / "index.html").write_text("".join(f'<img src="/p{i}.jpg">' for i in range(12)))
    with serve(site) as base_url:
        cmd = build_command(
            out=out, start_urls=[base_url + "/index.html"], max_images=2, download_delay=0, workers=1, retries=0,
            allowed_networks=["127.0.0.1/32"],
        )
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["finish_reason"] == "max_images"
    manifest = pd.read_parquet(out / "manifest.parquet")
    stored = manifest[manifest["status"] == "ok"]
    # Validations already running finish (at most 2 per worker); everything else is recorded as skipped.
    assert 2 <= len(stored) <= 3 and summary["images_stored"] == len(stored)
    assert set(manifest["status"]) <= {"ok", "skipped"}
    assert len(list((out / "images").rglob("*.jpg"))) == len(stored)
