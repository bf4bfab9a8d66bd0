"""run_dedupe end to end on generated images: folder mode, manifest mode, cache reuse, undecodable files."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image
from skimage import data

from gencomp.data import dedupe, hashing


def _save(img: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture()
def corpus(tmp_path):
    """astronaut x4 (original, copy in a subfolder, smaller PNG, low-quality JPEG), chelsea, coffee, 2 bad files."""
    root = tmp_path / "imgs"
    astro = Image.fromarray(data.astronaut())
    _save(astro, root / "astro.jpg", quality=92)
    (root / "sub").mkdir()
    (root / "sub" / "astro_copy.jpg").write_bytes((root / "astro.jpg").read_bytes())
    _save(astro.resize((256, 256), Image.Resampling.LANCZOS), root / "astro_small.png")
    _save(astro, root / "astro_q35.jpg", quality=35)
    _save(Image.fromarray(data.chelsea()), root / "chelsea.jpg", quality=90)
    _save(Image.fromarray(data.coffee()), root / "coffee.jpg", quality=90)
    (root / "notes.jpg").write_bytes(b"<!doctype html><html></html>")
    (root / "cut.jpg").write_bytes((root / "chelsea.jpg").read_bytes()[:1500])
    (root / ".hidden.jpg").write_bytes((root / "coffee.jpg").read_bytes())
    return root


def test_folder_mode_clusters_keeps_one_and_records_rejects(corpus, tmp_path):
    out = tmp_path / "out"
    summary = dedupe.run_dedupe(corpus, out, workers=1, threshold=10)
    df = pd.read_parquet(out / "clusters.parquet")
    assert set(dedupe.CLUSTER_COLUMNS) <= set(df.columns)
    assert len(df) == 8  # hidden file skipped
    by_path = df.set_index("path")

    astro = df[df["path"].str.contains("astro")]
    assert astro["cluster_key"].nunique() == 1
    assert astro["cluster_key"].iloc[0] == astro["sha256"].min()
    kept = astro[astro["keep"]]
    assert len(kept) == 1
    # most pixels, then the largest file: the q92 JPEG beats its q35 sibling; copies tie -> smaller path
    assert kept["path"].iloc[0] == "astro.jpg"
    assert by_path.loc["sub/astro_copy.jpg", "distance"] == 0
    assert not by_path.loc["sub/astro_copy.jpg", "keep"]

    assert by_path.loc["chelsea.jpg", "keep"] and by_path.loc["coffee.jpg", "keep"]
    assert by_path.loc["chelsea.jpg", "cluster_key"] != by_path.loc["coffee.jpg", "cluster_key"]
    assert by_path.loc["notes.jpg", "reason"] == "not_an_image"
    assert by_path.loc["cut.jpg", "reason"] == "truncated"
    assert not df[df["status"] == "rejected"]["keep"].any()
    assert df[df["status"] == "rejected"]["distance"].isna().all()
    assert (by_path.loc["astro.jpg", ["width", "height"]] == [512, 512]).all()
    assert by_path.loc["astro.jpg", "bytes"] == (corpus / "astro.jpg").stat().st_size

    assert summary["files"] == 8 and summary["rejected"] == 2 and summary["kept"] == 3
    assert summary["near_duplicate_clusters"] == 1 and summary["newly_hashed"] == 7
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > 128 and sheet.height > 128
    assert not list(out.glob(".*.tmp"))


def test_rerun_uses_the_cache_and_is_deterministic(corpus, tmp_path):
    out = tmp_path / "out"
    dedupe.run_dedupe(corpus, out, workers=1)
    first = (out / "clusters.parquet").read_bytes()
    again = dedupe.run_dedupe(corpus, out, workers=1)
    assert again["newly_hashed"] == 0
    assert (out / "clusters.parquet").read_bytes() == first

    # a "rescrape": one new image; only it is hashed, the old rows keep their cluster keys
    _save(Image.fromarray(data.rocket()), corpus / "rocket.jpg", quality=90)
    third = dedupe.run_dedupe(corpus, out, workers=1)
    assert third["newly_hashed"] == 1
    old = pd.read_parquet(io.BytesIO(first)).set_index("path")["cluster_key"]
    new = pd.read_parquet(out / "clusters.parquet").set_index("path")["cluster_key"]
    assert (new[old.index] == old).all()


def test_threshold_zero_still_merges_exact_copies(corpus, tmp_path):
    dedupe.run_dedupe(corpus, tmp_path / "out", threshold=0, hash_kind="dhash", workers=1)
    df = pd.read_parquet(tmp_path / "out" / "clusters.parquet").set_index("path")
    assert df.loc["astro.jpg", "cluster_key"] == df.loc["sub/astro_copy.jpg", "cluster_key"]
    ok = df[df["status"] == "ok"]
    assert (ok["distance"] == 0).all()  # at threshold 0 a cluster holds one hash value only
    assert ok.groupby("cluster_key")["dhash"].nunique().max() == 1
    assert df.loc["chelsea.jpg", "cluster_key"] != df.loc["coffee.jpg", "cluster_key"]


def test_manifest_mode_uses_urls_and_ok_rows(corpus, tmp_path):
    sha = hashing.sha256_file(corpus / "astro.jpg")
    manifest = pd.DataFrame(
        {
            "url": ["http://a/1.jpg", "http://b/same.jpg", "http://c/cat.jpg", "http://d/404", "http://e/gone.jpg"],
            "page_url": ["http://a/"] * 5,
            "status": ["ok", "ok", "ok", "http_404", "ok"],
            "sha256": [sha, sha, hashing.sha256_file(corpus / "chelsea.jpg"), "", "f" * 64],
            "path": ["astro.jpg", "astro.jpg", "chelsea.jpg", "", "images/ff/gone.jpg"],
        }
    )
    manifest.to_parquet(tmp_path / "manifest.parquet")
    summary = dedupe.run_dedupe(corpus, tmp_path / "out", manifest=tmp_path / "manifest.parquet", workers=1)
    df = pd.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert len(df) == 4  # the 404 row is not an image
    same = df[df["sha256"] == sha]
    assert sorted(same["url"]) == ["http://a/1.jpg", "http://b/same.jpg"]
    assert same["keep"].sum() == 1 and same["cluster_key"].nunique() == 1
    gone = df[df["url"] == "http://e/gone.jpg"].iloc[0]
    assert gone["status"] == "rejected" and gone["reason"] == hashing.READ_ERROR and not gone["keep"]
    assert summary["kept"] == 2


def test_bad_arguments_are_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match="hash_kind"):
        dedupe.run_dedupe(corpus, tmp_path / "o", hash_kind="ahash")
    with pytest.raises(FileNotFoundError):
        dedupe.run_dedupe(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(FileNotFoundError):
        dedupe.run_dedupe(corpus, tmp_path / "o", manifest=tmp_path / "missing.parquet")
    assert not (tmp_path / "o" / "clusters.parquet").exists()


def test_out_dir_inside_images_dir_is_not_scanned(corpus):
    out = corpus / "_dedup"
    dedupe.run_dedupe(corpus, out, workers=1)
    dedupe.run_dedupe(corpus, out, workers=1)  # second run sees hashes.parquet etc. inside corpus
    df = pd.read_parquet(out / "clusters.parquet")
    assert not df["path"].str.startswith("_dedup").any()
