"""Scale-out: two ``python -m scraper.crawl --redis-url`` processes share a real Redis and crawl one site as one.

A real ``redis-server`` runs on a free loopback port (no persistence, in a temp dir); a loopback site serves 30
distinct images over 6 pages, plus one image on two pages, two URLs with the same content, a robots-disallowed
image and an offsite one. Both processes are started together; the site's request log and the merged manifest
show that every image was fetched exactly once, by one of them, and that both did part of the work.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import socket
import subprocess
import time

import pandas as pd
import pytest

from scraper.crawl import build_command
from scraper.manifest import PARTS_DIR_NAME
from tests.conftest import REPO
from tests.scraper_site import LoopbackSite, Route, image, jpeg, page

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (.ci/run installs Debian's redis-server; locally: apt-get install redis-server)",
)

PAGES = 6
IMAGES_PER_PAGE = 5
IMAGE_DELAY_S = 0.25  # slow enough that one process alone would take seconds: the other joins in meanwhile
WORKERS = ("w1", "w2")

GOOD = {
    f"/p{p}/img{i}.jpg": jpeg(100 + p * IMAGES_PER_PAGE + i, 48, 36) for p in range(PAGES) for i in range(IMAGES_PER_PAGE)
}
SAME_CONTENT = jpeg(999, 48, 36)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", client
        client.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def build_routes(site: LoopbackSite, offsite: LoopbackSite, *, wait_for_workers) -> None:
    r = site.routes
    r["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    for path, body in GOOD.items():
        r[path] = image(body, delay_s=IMAGE_DELAY_S)
    r["/shared/same-a.jpg"] = image(SAME_CONTENT, delay_s=IMAGE_DELAY_S)
    r["/shared/same-b.jpg"] = image(SAME_CONTENT, delay_s=IMAGE_DELAY_S)
    r["/private/secret.jpg"] = image(jpeg(998))
    offsite.routes["/elsewhere.jpg"] = image(jpeg(997))
    links = []
    for p in range(PAGES):
        imgs = "".join(f'<img src="/p{p}/img{i}.jpg">' for i in range(IMAGES_PER_PAGE))
        imgs += '<img src="/p0/img0.jpg">'  # the same image URL on every page: requested once, by one process
        if p == 1:
            imgs += '<img src="/shared/same-a.jpg"><img src="/private/secret.jpg">'
            imgs += f'<img src="http://{offsite.host}:{offsite.port}/elsewhere.jpg">'
        if p == 4:
            imgs += '<img src="/shared/same-b.jpg">'
        r[f"/p{p}.html"] = page(imgs)
        links.append(f'<a href="/p{p}.html">page {p}</a>')
    index = page("".join(links))

    def index_once_both_joined(count: int) -> Route:
        # The first process must not crawl the whole site before the second one has even started.
        wait_for_workers()
        return index

    r["/index.html"] = Route(handler=index_once_both_joined)


@needs_redis_server
def test_two_processes_fetch_every_image_once(tmp_path, redis_url):
    url, client = redis_url
    out = tmp_path / "raw"
    redis_key = "gencomp:test-run"

    def wait_for_workers(timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while int(client.get(f"{redis_key}:workers") or 0) < len(WORKERS) and time.monotonic() < deadline:
            time.sleep(0.05)

    with LoopbackSite() as site, LoopbackSite(host="127.0.0.2") as offsite:
        build_routes(site, offsite, wait_for_workers=wait_for_workers)
        procs = {}
        for worker in WORKERS:
            cmd = build_command(
                out=out, start_urls=[site.base_url + "/index.html"], depth=1, download_delay=0, timeout=10,
                retries=1, workers=1, concurrency_per_domain=2, redis_url=url, redis_key=redis_key, worker_id=worker, idle_timeout=5,
                allowed_networks=["127.0.0.1/32"],
            )
            procs[worker] = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = {w: p.communicate(timeout=120) for w, p in procs.items()}
        requested = collections.Counter(r.path for r in site.requests)
        offsite_requests = list(offsite.requests)

    summaries = {}
    for worker, (stdout, stderr) in results.items():
        assert procs[worker].returncode == 0, f"{worker}:\n{stdout[-2000:]}\n{stderr[-3000:]}"
        summaries[worker] = json.loads(stdout.strip().splitlines()[-1])
    # Exactly one process was the last to leave; it merged both parts, and the run's Redis keys are gone.
    assert sorted(s["workers_left"] for s in summaries.values()) == [0, 1]
    assert [s["merged"] for s in summaries.values()].count(True) == 1
    assert client.dbsize() == 0, client.keys("*")
    assert not (out / PARTS_DIR_NAME).exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "temp files left behind"

    manifest = pd.read_parquet(out / "manifest.parquet")
    images = manifest[(manifest["kind"] == "image") & (manifest["status"] != "duplicate_url")]

    # The site saw each image exactly once, over both processes; robots and offsite rules held.
    image_paths = [*GOOD, "/shared/same-a.jpg", "/shared/same-b.jpg"]
    assert {p: requested[p] for p in image_paths} == {p: 1 for p in image_paths}
    assert requested["/private/secret.jpg"] == 0 and offsite_requests == []
    for p in range(PAGES):
        assert requested[f"/p{p}.html"] == 1

    # One row per URL (no URL fetched twice), every good image stored with its exact bytes.
    per_url = images.groupby("url").size()
    assert per_url.max() == 1, per_url[per_url > 1]
    by_url = images.set_index("url")
    for path, body in GOOD.items():
        r = by_url.loc[site.base_url + path]
        assert r["status"] == "ok", (path, r["status"], r["error"])
        assert r["sha256"] == hashlib.sha256(body).hexdigest()
        assert (out / r["path"]).read_bytes() == body
    same = by_url.loc[[site.base_url + "/shared/same-a.jpg", site.base_url + "/shared/same-b.jpg"], "status"]
    assert sorted(same) == ["duplicate_content", "ok"]  # content shared across processes, stored once
    assert by_url.loc[site.base_url + "/private/secret.jpg", "status"] == "robots"
    assert by_url.loc[f"http://{offsite.host}:{offsite.port}/elsewhere.jpg", "status"] == "offsite"
    # The image on every page: one fetch, and a duplicate_url row for each other page it appeared on.
    dup_rows = manifest[(manifest["url"] == site.base_url + "/p0/img0.jpg") & (manifest["status"] == "duplicate_url")]
    assert len(dup_rows) == PAGES - 1

    # Both processes did part of the work: the split by worker of the fetched images.
    fetched = images[images["http_status"] == 200]
    split = fetched["crawl_id"].str.rsplit("-", n=1).str[-1].value_counts().to_dict()
    print(f"images fetched per worker: {split}")
    assert set(split) == set(WORKERS), split
    assert sum(split.values()) == len(GOOD) + 2
    assert sum(s["images_tried"] for s in summaries.values()) == int((manifest["kind"] == "image").sum())


@needs_redis_server
def test_worker_count_and_cleanup(tmp_path, redis_url):
    from scraper.shared_state import RedisCrawlState

    url, client = redis_url
    a = RedisCrawlState(redis_url=url, key_prefix="gencomp:test")
    b = RedisCrawlState(redis_url=url, key_prefix="gencomp:test")
    assert (a.register(), b.register()) == (1, 2)
    assert a.claim_page("http://x/p.html") and not b.claim_page("http://x/p.html")
    assert a.claim_image("http://x/i.jpg", "http://x/p.html") is None
    assert b.claim_image("http://x/i.jpg", "http://x/q.html") == "http://x/p.html"
    assert b.claim_content("abc") and not a.claim_content("abc")
    assert (a.count_stored(), b.count_stored()) == (1, 2)
    assert a.finish() == 1 and client.exists("gencomp:test:pages")
    assert b.finish() == 0 and client.dbsize() == 0  # the last one out deleted the run's keys

    a.register()
    a.claim_page("http://x/p.html")  # a crashed run leaves its keys: --redis-reset removes them
    proc = subprocess.run(build_command(out=tmp_path, redis_url=url, redis_key="gencomp:test") + ["--redis-reset"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["keys_deleted"] == 2
    assert client.dbsize() == 0
    a.close()
    b.close()


def test_merge_only_is_idempotent_and_read_manifest_sees_parts(tmp_path):
    from scraper.manifest import (
        merge_manifest_parts,
        read_manifest,
        rows_to_table,
        write_manifest,
        write_manifest_part,
    )

    out = tmp_path / "raw"
    write_manifest(out, rows_to_table([{"url": "http://a/old.jpg", "status": "ok", "crawl_id": "run0"}]))
    write_manifest_part(out, "run1-w1", rows_to_table([{"url": "http://a/1.jpg", "status": "ok", "crawl_id": "run1-w1"}]))
    write_manifest_part(out, "run1-w2", rows_to_table([{"url": "http://a/2.jpg", "status": "ok", "crawl_id": "run1-w2"}]))
    assert read_manifest(out).column("url").to_pylist() == ["http://a/old.jpg", "http://a/1.jpg", "http://a/2.jpg"]
    assert read_manifest(out, include_parts=False).num_rows == 1

    # A crash after the merged file was written but before the parts were deleted: the parts are recognised
    # as merged by their crawl_id, so a second merge adds nothing.
    write_manifest(out, read_manifest(out))
    assert read_manifest(out).num_rows == 3
    path, parts = merge_manifest_parts(out)
    assert parts == 2 and read_manifest(out, include_parts=False).num_rows == 3
    assert merge_manifest_parts(out) == (path, 0)
    assert read_manifest(out).num_rows == 3

    with pytest.raises(ValueError, match="one crawl_id"):
        write_manifest_part(out, "run2-w1", rows_to_table([{"url": "http://a/x.jpg", "status": "ok", "crawl_id": "x"}]))
    with pytest.raises(ValueError, match="names a file"):
        write_manifest_part(out, "../escape", rows_to_table([]))


def test_merge_only_command(tmp_path):
    from scraper.manifest import rows_to_table, write_manifest_part

    out = tmp_path / "raw"
    write_manifest_part(out, "run1-w1", rows_to_table([{"url": "http://a/1.jpg", "status": "ok", "crawl_id": "run1-w1"}]))
    proc = subprocess.run(build_command(out=out, merge_only=True), cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["parts_merged"] == 1 and summary["rows"] == 1
    assert pd.read_parquet(out / "manifest.parquet")["url"].tolist() == ["http://a/1.jpg"]


def test_unreachable_redis_is_a_clear_failure(tmp_path):
    cmd = build_command(out=tmp_path / "raw", start_urls=["http://127.0.0.1:9/index.html"],
                        redis_url=f"redis://127.0.0.1:{free_port()}/0")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "redis at redis://127.0.0.1:" in proc.stderr and "ConnectionError" in proc.stderr


# -- the queue's serializer: JSON, never pickle ----------------------------------------------------------------


class _PickleBomb:
    """Unpickling this runs a command that creates a file: what pickle in a shared queue allows."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _spider():
    from scraper.spiders.images import ImagesSpider

    return ImagesSpider(start_urls=["http://example.com/"])


def _queued_request(spider):
    from scrapy import Request

    return Request(
        "http://example.com/img/a.jpg?x=1",
        callback=spider.parse_image,
        errback=spider.on_image_error,
        method="GET",
        headers={"If-None-Match": '"etag"', "X-Raw": b"\xff\x00"},
        body=b"\x00\x01\xfe\xff binary",
        priority=10,
        dont_filter=True,
        meta={
            "image_url": "http://example.com/img/a.jpg?x=1", "page_url": "http://example.com/", "license": "",
            "page_depth": 2, "retry_times": 1, "redirect_urls": ["http://example.com/r"],
            "redirect_reasons": [301], "download_latency": 0.25, "pair": (1, "two"), "raw": b"\x80",
            "__bytes__": "a key that looks like a tag", "nested": {"__tuple__": [1]},
        },
        cb_kwargs={"n": 1},
    )


def test_json_serializer_round_trips_a_request():
    from scrapy.utils.request import request_from_dict

    from scraper import redis_serializer

    spider = _spider()
    request = _queued_request(spider)
    data = request.to_dict(spider=spider)
    payload = redis_serializer.dumps(data)
    assert isinstance(payload, bytes) and json.loads(payload)["url"] == request.url  # plain JSON
    back = redis_serializer.loads(payload)
    assert back == data
    rebuilt = request_from_dict(back, spider=spider)
    assert (rebuilt.url, rebuilt.body, rebuilt.meta, rebuilt.priority) == (request.url, request.body, request.meta,
                                                                           request.priority)
    assert rebuilt.headers == request.headers and rebuilt.cb_kwargs == {"n": 1}
    assert rebuilt.callback == spider.parse_image and rebuilt.errback == spider.on_image_error


def test_json_serializer_refuses_pickle_and_foreign_payloads(tmp_path):
    import pickle

    from scraper import redis_serializer

    marker = tmp_path / "pwned"
    bomb = pickle.dumps({"url": "http://example.com/", "x": _PickleBomb(marker)}, protocol=4)
    with pytest.raises(redis_serializer.QueuePayloadError):
        redis_serializer.loads(bomb)
    assert not marker.exists(), "the pickle payload was executed"
    spider = _spider()
    good = json.loads(redis_serializer.dumps(_queued_request(spider).to_dict(spider=spider)))
    for bad in [
        b"\x80\x04not json", b"[1, 2]", b'"a string"', b"{}",
        json.dumps({**good, "callback": "close"}).encode(),  # a spider method that is no queue callback
        json.dumps({**good, "errback": "__init__"}).encode(),
        json.dumps({**good, "method": "CONNECT"}).encode(),
        json.dumps({**good, "_class": "os.system"}).encode(),
        json.dumps({**good, "body": {"__bytes__": "%%%"}}).encode(),
    ]:
        with pytest.raises(redis_serializer.QueuePayloadError):
            redis_serializer.loads(bad)


def test_crawl_settings_use_the_json_serializer(tmp_path):
    from scraper.crawl import crawl_settings, make_parser

    args = make_parser().parse_args(["--out", str(tmp_path), "--start-url", "http://example.com/",
                                     "--redis-url", "redis://127.0.0.1:6379/0"])
    args.redis_key, args.worker_id = "gencomp:test", "w1"
    settings = crawl_settings(args, "run-w1")
    assert settings["SCHEDULER_SERIALIZER"] == "scraper.redis_serializer"
    assert settings["SCHEDULER"] == "scrapy_redis.scheduler.Scheduler"


@needs_redis_server
def test_redis_queue_stores_json_and_refuses_an_injected_pickle(tmp_path, redis_url):
    import pickle

    from scrapy_redis.queue import PriorityQueue

    from scraper import redis_serializer

    url, client = redis_url
    spider = _spider()
    queue = PriorityQueue(client, spider, "gencomp:test:requests", serializer=redis_serializer)
    request = _queued_request(spider)
    queue.push(request)
    (stored,) = client.zrange("gencomp:test:requests", 0, -1)
    assert json.loads(stored)["url"] == request.url  # what sits in Redis is JSON
    popped = queue.pop()
    assert popped.url == request.url and popped.body == request.body and popped.meta == request.meta

    # Someone with write access to Redis queues a pickle: popping it is refused, nothing runs.
    marker = tmp_path / "pwned"
    client.zadd("gencomp:test:requests", {pickle.dumps(_PickleBomb(marker)): 0})
    with pytest.raises(redis_serializer.QueuePayloadError):
        queue.pop()
    assert not marker.exists()
