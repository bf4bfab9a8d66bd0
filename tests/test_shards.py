"""Shards: original bytes, cluster-aware stable split, append-only reruns, crash cleanup, checksums."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gencomp.data import shards
from gencomp.data.dedupe import run_dedupe


def _make_images(folder, start, count, size=(40, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + count):
        rng = np.random.default_rng(k)
        small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)  # blocky: distinct perceptual hashes
        Image.fromarray(small).resize(size, Image.Resampling.NEAREST).save(folder / f"img{k:03d}.png")


@pytest.fixture()
def deduped(tmp_path):
    imgs = tmp_path / "imgs"
    _make_images(imgs, 0, 30)
    # a near-duplicate: a smaller copy of img000, which must not be sharded
    Image.open(imgs / "img000.png").resize((20, 16), Image.Resampling.NEAREST).save(imgs / "img000_small.png")
    run_dedupe(imgs, tmp_path / "dedup", workers=1)
    return imgs, tmp_path / "dedup" / "clusters.parquet"


def _read_all(out_dir):
    manifest = shards.read_manifest(out_dir)
    return pd.concat([pq.read_table(out_dir / s["file"]).to_pandas() for s in manifest["shards"]], ignore_index=True)


def test_shards_hold_kept_images_with_original_bytes_and_their_cluster_split(deduped, tmp_path):
    imgs, clusters_path = deduped
    out = tmp_path / "shards"
    m = shards.write_shards(clusters_path, imgs, out, target_rows=8, row_group_rows=3)
    clusters = pd.read_parquet(clusters_path)
    kept = clusters[clusters["keep"]]
    rows = _read_all(out)
    assert list(rows.columns) == shards.SHARD_SCHEMA.names
    assert sorted(rows["sha256"]) == sorted(kept["sha256"])
    pair = clusters[clusters["path"].isin(["img000.png", "img000_small.png"])]
    assert pair["cluster_key"].nunique() == 1 and pair["keep"].sum() == 1
    keys = sorted(kept["cluster_key"])
    plain = {k: shards.assign_split(k, shards.DEFAULT_SPLITS, "gencomp") for k in keys}
    expected = shards._rebalance_tiny({k: shards.split_point(k, "gencomp") for k in keys}, plain,
                                      shards.DEFAULT_SPLITS)
    for r in rows.itertuples():
        path = kept.loc[kept["sha256"] == r.sha256, "path"].iloc[0]
        assert r.image == (imgs / path).read_bytes()
        assert r.split == expected[r.cluster_key]
    assert m["rows"] == len(kept) and sum(m["split_counts"].values()) == len(kept)
    assert list(m["split_counts"]) == ["train", "val", "test"]
    assert all(s["rows"] <= 8 for s in m["shards"])
    for s in m["shards"]:
        pf = pq.ParquetFile(out / s["file"])
        assert pf.metadata.num_row_groups == len(s["row_groups"])
        for g in range(pf.metadata.num_row_groups):
            split_col = pf.read_row_group(g, columns=["split"]).column("split").to_pylist()
            assert len(set(split_col)) == 1 and len(split_col) <= 3
            assert split_col[0] == s["row_groups"][g]["split"]
    assert shards.verify_shards(out)["rows"] == len(kept)


def test_same_inputs_give_byte_identical_shards(deduped, tmp_path):
    imgs, clusters_path = deduped
    a = shards.write_shards(clusters_path, imgs, tmp_path / "a", target_rows=7)
    b = shards.write_shards(clusters_path, imgs, tmp_path / "b", target_rows=7)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert (tmp_path / "a" / "_manifest.json").read_bytes() == (tmp_path / "b" / "_manifest.json").read_bytes()


def test_rerun_appends_only_new_images_and_never_moves_old_ones(deduped, tmp_path):
    imgs, clusters_path = deduped
    out = tmp_path / "shards"
    first = shards.write_shards(clusters_path, imgs, out, target_rows=10)
    again = shards.write_shards(clusters_path, imgs, out, target_rows=10)
    assert again["written"] == [] and again["shards"] == first["shards"]

    _make_images(imgs, 30, 12)  # a rescrape brings 12 new images
    run_dedupe(imgs, clusters_path.parent, workers=1)
    third = shards.write_shards(clusters_path, imgs, out, target_rows=10)
    assert third["shards"][: len(first["shards"])] == first["shards"]
    assert third["written"] and all(w not in [s["file"] for s in first["shards"]] for w in third["written"])
    assert third["rows"] == first["rows"] + 12
    rows = _read_all(out)
    assert rows["sha256"].is_unique and rows["cluster_key"].is_unique
    shards.verify_shards(out)


def test_crash_leftovers_are_removed_and_the_result_is_the_same(deduped, tmp_path):
    imgs, clusters_path = deduped
    clean = shards.write_shards(clusters_path, imgs, tmp_path / "clean", target_rows=8)

    out = tmp_path / "crashed"
    shards.write_shards(clusters_path, imgs, out, target_rows=8)
    manifest = json.loads((out / "_manifest.json").read_text())
    last = manifest["shards"].pop()  # as if we crashed after renaming the last shard, before the manifest
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / ".tmp-part-00009.parquet").write_bytes(b"half a shard")
    with pytest.raises(shards.ShardError, match="not in the manifest"):
        shards.verify_shards(out)
    result = shards.write_shards(clusters_path, imgs, out, target_rows=8)
    assert last["file"] in result["removed_stray"] and ".tmp-part-00009.parquet" in result["removed_stray"]
    assert result["shards"] == clean["shards"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_corrupt_shard_is_refused(deduped, tmp_path):
    imgs, clusters_path = deduped
    out = tmp_path / "shards"
    m = shards.write_shards(clusters_path, imgs, out)
    path = out / m["shards"][0]["file"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(shards.ShardError, match="corrupt shard"):
        shards.verify_shards(out)
    path.unlink()
    with pytest.raises(shards.ShardError, match="missing"):
        shards.verify_shards(out)


def test_changing_salt_or_fractions_of_an_existing_set_is_refused(deduped, tmp_path):
    imgs, clusters_path = deduped
    out = tmp_path / "shards"
    shards.write_shards(clusters_path, imgs, out)
    with pytest.raises(shards.ShardError, match="move images"):
        shards.write_shards(clusters_path, imgs, out, salt="other")
    with pytest.raises(shards.ShardError, match="move images"):
        shards.write_shards(clusters_path, imgs, out, split_fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    with pytest.raises(ValueError, match="sum to 1"):
        shards.write_shards(clusters_path, imgs, tmp_path / "x", split_fractions={"train": 0.9, "val": 0.2})


def test_changed_or_missing_files_are_skipped_not_sharded(deduped, tmp_path):
    imgs, clusters_path = deduped
    (imgs / "img005.png").write_bytes(b"replaced")
    (imgs / "img006.png").unlink()
    m = shards.write_shards(clusters_path, imgs, tmp_path / "shards")
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert reasons["img005.png"] == "file changed since dedupe"
    assert reasons["img006.png"].startswith("unreadable")
    assert m["rows"] == pd.read_parquet(clusters_path)["keep"].sum() - 2


def test_split_is_a_stable_function_of_the_cluster_key():
    keys = [f"{k:064x}" for k in range(2000)]
    splits = [shards.assign_split(k, shards.DEFAULT_SPLITS, "gencomp") for k in keys]
    share = pd.Series(splits).value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.04 and abs(share["val"] - 0.1) < 0.03
    assert splits == [shards.assign_split(k, dict(shards.DEFAULT_SPLITS), "gencomp") for k in keys]
    assert splits != [shards.assign_split(k, shards.DEFAULT_SPLITS, "salt2") for k in keys]


def test_tiny_corpus_rule_fills_empty_splits_deterministically():
    fractions = shards.DEFAULT_SPLITS
    keys = [f"{k:064x}" for k in range(5)]
    points = {k: shards.split_point(k, "gencomp") for k in keys}
    plain = {k: shards.assign_split(k, fractions, "gencomp") for k in keys}
    fixed = shards._rebalance_tiny(points, plain, fractions)
    assert set(fixed.values()) == {"train", "val", "test"}
    assert fixed == shards._rebalance_tiny(points, plain, fractions)
    assert sum(fixed[k] != plain[k] for k in keys) == 3 - len(set(plain.values()))
    many = [f"{k:064x}" for k in range(300)]  # big enough: the rule changes nothing
    plain = {k: shards.assign_split(k, fractions, "gencomp") for k in many}
    assert shards._rebalance_tiny({k: shards.split_point(k, "gencomp") for k in many}, plain, fractions) == plain
