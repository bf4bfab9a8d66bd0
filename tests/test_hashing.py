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


def _distance(a: int, b: int) -> int:
    return int(np.bitwise_count(np.int64(a).view(np.uint64) ^ np.int64(b).view(np.uint64)))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_values_from_the_reduced_copy_stay_those_of_the_whole_image(name):
    # PNG at twice the size: no DCT-scaled decode, so the image is box-reduced first (1024x1024 -> 204x204)
    img = Image.fromarray(getattr(data, name)())
    buf = io.BytesIO()
    img.resize((2 * img.width, 2 * img.height), Image.Resampling.LANCZOS).save(buf, format="PNG")
    grey = open_image(buf.getvalue(), draft_size=hashing.HASH_DRAFT_SIZE).convert("L")
    assert hashing._reduce_factor(grey.size) > 1
    row = hashing.image_features(grey)
    lanczos = Image.Resampling.LANCZOS
    # pHash and dHash are imagehash's own; "full" is the canonical form of the same 32x32 resize
    assert row["phash"] == int(np.uint64(int(str(imagehash.phash(grey)), 16)).view(np.int64))
    assert row["dhash"] == int(np.uint64(int(str(imagehash.dhash(grey)), 16)).view(np.int64))
    full32 = np.asarray(grey.resize((32, 32), lanczos), dtype=np.float64)
    assert (row["full"], row["full_alt"], row["full_mirrored"]) == hashing.canonical_phash(full32)
    # the rest, resized from the whole decode instead, differ by a few bits / grey levels at most
    w, h = grey.size
    for kind, share in hashing.CANDIDATE_KINDS.items():
        box = ((1 - share) / 2 * w, (1 - share) / 2 * h, (1 + share) / 2 * w, (1 + share) / 2 * h)
        direct, _, _ = hashing.canonical_phash(np.asarray(grey.resize((32, 32), lanczos, box=box), dtype=np.float64))
        assert _distance(row[kind], direct) <= 4, kind
    direct_thumb = np.asarray(grey.resize((hashing.THUMB_SIDE,) * 2, lanczos), dtype=np.float64)
    assert np.abs(np.frombuffer(row["thumb"], dtype=np.uint8) - direct_thumb.reshape(-1)).mean() < 1.5


def test_rows_of_another_hasher_are_recomputed_not_mixed(tmp_path, astronaut, monkeypatch):
    files = []
    for i, q in enumerate((95, 60)):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(_jpeg(astronaut.rotate(10 * i), q))
        files.append((p, hashing.sha256_file(p)))
    cache = tmp_path / "hashes.parquet"
    fresh = hashing.update_hash_cache(files, cache, workers=1)
    # the same rows as an older hasher left them: same columns, other thumbnails and candidate hashes
    old = hashing.read_hash_cache(cache)
    old["hasher"] = "imagehash-4.3.2/phash8+dhash8+canon-full-c92-c60/thumb64/draft128x128"
    old["c60"] = old["c60"] ^ 0xFF
    old["thumb"] = [bytes(len(t)) for t in old["thumb"]]
    old.to_parquet(cache)

    calls = []
    real = hashing.hash_file
    monkeypatch.setattr(hashing, "hash_file", lambda p: calls.append(p) or real(p))
    again = hashing.update_hash_cache(files, cache, workers=1)
    assert calls == [str(p) for p, _ in files]
    pd.testing.assert_frame_equal(again, fresh)
    kept = hashing.read_hash_cache(cache)
    assert (kept["hasher"] == hashing.HASHER_ID).all() and len(kept) == 2
