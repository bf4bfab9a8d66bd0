"""Hashing: one decode path, 64-bit hashes, cache by sha256, undecodable files recorded not raised."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from gencomp.data import hashing
from gencomp.data.images import open_image


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_hash_matches_imagehash_on_the_shared_decode_path(astronaut):
    raw = _jpeg(astronaut)
    row = hashing.hash_image_bytes(raw)
    grey = open_image(raw, draft_size=hashing.HASH_DRAFT_SIZE).convert("L")
    expected = int(str(imagehash.phash(grey)), 16)  # imagehash's hex is the same MSB-first packing
    assert row["status"] == "ok"
    assert int(hashing.as_uint64(np.array([row["phash"]], dtype=np.int64))[0]) == expected
    assert int(np.int64(row["dhash"]).view(np.uint64)) == int(str(imagehash.dhash(grey)), 16)
    assert (row["width"], row["height"], row["format"]) == (512, 512, "JPEG")
    assert row["sha256"] == hashing.sha256_bytes(raw)


def test_near_copies_hash_close_and_different_images_far(astronaut):
    base = hashing.hash_image_bytes(_jpeg(astronaut))
    smaller = hashing.hash_image_bytes(_jpeg(astronaut.resize((256, 256), Image.Resampling.LANCZOS), 50))
    other = hashing.hash_image_bytes(_jpeg(Image.fromarray(data.chelsea())))
    def dist(a, b):
        return int(np.bitwise_count(np.int64(a["phash"]).view(np.uint64) ^ np.int64(b["phash"]).view(np.uint64)))

    assert dist(base, smaller) <= 4
    assert dist(base, other) >= 16


def test_undecodable_and_unreadable_files_become_rows(tmp_path, astronaut):
    (tmp_path / "junk.jpg").write_bytes(b"<html>not an image</html>")
    (tmp_path / "cut.jpg").write_bytes(_jpeg(astronaut)[:2000])
    frame = hashing.hash_files([tmp_path / "junk.jpg", tmp_path / "cut.jpg", tmp_path / "gone.jpg"], workers=1)
    assert list(frame["status"]) == ["rejected"] * 3
    assert list(frame["reason"]) == ["not_an_image", "truncated", hashing.READ_ERROR]
    assert frame["phash"].isna().all()


def test_cache_hashes_only_new_files_and_keeps_64_bit_values(tmp_path, astronaut, monkeypatch):
    files = []
    for i, q in enumerate((95, 60)):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(_jpeg(astronaut, q))
        files.append((p, hashing.sha256_file(p)))
    cache = tmp_path / "out" / "hashes.parquet"
    first = hashing.update_hash_cache(files, cache, workers=1)
    assert first["phash"].dtype == pd.Int64Dtype()

    calls = []
    real = hashing.hash_file
    monkeypatch.setattr(hashing, "hash_file", lambda p: calls.append(p) or real(p))
    new = tmp_path / "img2.png"
    Image.fromarray(data.chelsea()).save(new)
    second = hashing.update_hash_cache(files + [(new, hashing.sha256_file(new))], cache, workers=1)
    assert calls == [str(new)]
    assert list(second["phash"][:2]) == list(first["phash"])
    assert len(hashing.read_hash_cache(cache)) == 3
    assert not list(cache.parent.glob("*.tmp"))


def test_process_pool_gives_the_same_rows_as_in_process(tmp_path, astronaut):
    paths = []
    for i in range(40):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(_jpeg(astronaut.rotate(i), 80))
        paths.append(p)
    serial = hashing.hash_files(paths, workers=1)
    pooled = hashing.hash_files(paths, workers=2, chunksize=4)
    pd.testing.assert_frame_equal(serial, pooled)
