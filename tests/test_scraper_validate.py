"""Validation of downloaded bodies and content-addressed storage (in-process and through the worker pool)."""

from __future__ import annotations

import hashlib

import pytest

from scraper.spiders.images import classify_failure, http_status_code
from scraper.validate import ValidationPool, image_relpath, validate_and_store
from tests.scraper_site import SVG, animated_gif, cmyk_jpeg, exif_rotated_jpeg, jpeg, png, png16, png_bomb


@pytest.mark.parametrize(
    "body, fmt, size",
    [
        (jpeg(1, 64, 48), "JPEG", (64, 48)),
        (png(2, 30, 20), "PNG", (30, 20)),
        (cmyk_jpeg(3, 40, 30), "JPEG", (40, 30)),
        (png16(4, 40, 30), "PNG", (40, 30)),
        (exif_rotated_jpeg(5, 60, 20), "JPEG", (20, 60)),
        (animated_gif(6, 32, 24), "GIF", (32, 24)),
    ],
)
def test_good_images_stored_original_bytes(tmp_path, body, fmt, size):
    result = validate_and_store(body, out_dir=tmp_path)
    sha = hashlib.sha256(body).hexdigest()
    assert result.status == "ok" and result.error == ""
    assert (result.format, (result.width, result.height), result.sha256) == (fmt, size, sha)
    assert result.path == image_relpath(sha, fmt) and result.path.startswith(f"images/{sha[:2]}/{sha}.")
    assert (tmp_path / result.path).read_bytes() == body
    assert [p.name for p in (tmp_path / "images" / sha[:2]).iterdir()] == [f"{sha}.{result.path.rsplit('.', 1)[1]}"]


@pytest.mark.parametrize(
    "body, status, kwargs",
    [
        (b"", "not_an_image", {}),
        (b"<!DOCTYPE html><html></html>", "not_an_image", {}),
        (SVG, "not_an_image", {}),
        (jpeg(7, 200, 150)[:1500], "truncated", {}),
        (png_bomb(), "too_large", {}),
        (jpeg(8, 64, 48), "too_large", {"max_pixels": 1000}),
        (jpeg(9, 64, 48), "too_small", {"min_width": 65}),
        (jpeg(10, 64, 48), "too_small", {"min_height": 49}),
        (png(11), "unsupported_format", {"formats": {"JPEG"}}),
    ],
)
def test_rejections_store_nothing(tmp_path, body, status, kwargs):
    result = validate_and_store(body, out_dir=tmp_path, **kwargs)
    assert result.status == status, result.error
    assert result.path == "" and result.error != ""
    assert result.sha256 == hashlib.sha256(body).hexdigest() and result.bytes == len(body)
    assert not (tmp_path / "images").exists()


def test_min_size_uses_displayed_orientation(tmp_path):
    body = exif_rotated_jpeg(12, 60, 20)  # displayed 20 x 60
    assert validate_and_store(body, out_dir=tmp_path, min_width=21).status == "too_small"
    assert validate_and_store(body, out_dir=tmp_path, min_height=60).status == "ok"


def test_pool_matches_in_process_and_dedupes(tmp_path):
    bodies = [jpeg(20), png(21), jpeg(20), b"junk"]
    with ValidationPool(workers=1, out_dir=tmp_path, min_width=8, min_height=8) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(b) for b in bodies]]
    assert [r.status for r in results] == ["ok", "ok", "ok", "not_an_image"]
    assert results[0].path == results[2].path
    assert len(list((tmp_path / "images").rglob("*.*"))) == 2


def test_pool_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        ValidationPool(workers=0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown image formats"):
        ValidationPool(workers=1, out_dir=tmp_path, formats={"JPEG", "PSD"})


def test_failure_classification():
    from scrapy.exceptions import DownloadCancelledError, DownloadTimeoutError, IgnoreRequest

    from scraper.middlewares import OffsiteRedirect

    assert classify_failure(IgnoreRequest("Forbidden by robots.txt"))[0] == "robots"
    assert classify_failure(IgnoreRequest("max redirections reached"))[0] == "too_many_redirects"
    assert classify_failure(OffsiteRedirect("http://evil/x.jpg"))[0] == "offsite_redirect"
    assert classify_failure(DownloadTimeoutError("took longer"))[0] == "timeout"
    msg = "Expected to receive 9 bytes which is larger than download max size (5) in request <GET u>."
    assert classify_failure(DownloadCancelledError(msg))[0] == "too_large_bytes"
    # a gzip bomb, as HttpCompressionMiddleware reports it: a size reason, not "ignored"
    bomb = ("Ignored response <200 http://x/a.jpg> because its body (52341 B compressed, 52428800 B decompressed "
            "so far) exceeded DOWNLOAD_MAXSIZE (50000000 B) during decompression.")
    assert classify_failure(IgnoreRequest(bomb))[0] == "too_large_bytes"
    from scrapy.utils._compression import _DecompressionMaxSizeExceeded

    chained = IgnoreRequest("ignored")
    chained.__cause__ = _DecompressionMaxSizeExceeded(60_000_000, 50_000_000)
    assert classify_failure(chained)[0] == "too_large_bytes"
    assert classify_failure(RuntimeError("x"))[0] == "download_error"
    assert [http_status_code(c) for c in (404, 410, 429, 500, 503)] == [
        "http_404", "http_410", "http_429", "http_5xx", "http_5xx"
    ]
