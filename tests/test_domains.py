"""Domains from local folders: cut and resized to the domain's size, split by group, written all or nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gencomp.data import domains
from gencomp.data.domains import DomainError, DomainSpec, build_domain_shards, prepare
from gencomp.data.loader import ShardDataset, iter_split_images
from gencomp.data.shards import ShardError, verify_shards

FACE_BOX = (0, 20, 178, 198)


def _jpeg(size, seed) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _faces_folder(tmp_path, people=12, each=4):
    """A folder laid out like the CelebA set: flat files, identities only in MANIFEST.tsv."""
    folder = tmp_path / "faces"
    folder.mkdir()
    lines = ["file\tpath_in_repo\tWxH\tbytes\tsha256"]
    for p in range(people):
        for k in range(each):
            name = f"{p:03d}{k:03d}.jpg"
            (folder / name).write_bytes(_jpeg((178, 218), p * 100 + k))
            lines.append(f"{name}\tData/celeb_{p}/{name}\t178x218\t0\tx")
    (folder / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return folder


def _faces_spec(folder, **kw):
    return DomainSpec("faces", str(folder), crop_box=FACE_BOX, size=128, group_by="parent", terms="research", **kw)


def test_faces_are_cut_to_the_celeba128_protocol_and_no_person_is_in_two_splits(tmp_path):
    folder = _faces_folder(tmp_path)
    manifest = build_domain_shards(_faces_spec(folder), tmp_path / "out")
    assert manifest["up_to_date"] is False and manifest["rows"] == 48
    assert manifest["domain"]["spec"]["crop_box"] == list(FACE_BOX) and manifest["domain"]["spec"]["terms"] == "research"
    verify_shards(tmp_path / "out")
    split_of_person: dict[str, set[str]] = {}
    for split in manifest["split_fractions"]:
        for _sha, img in iter_split_images(tmp_path / "out", split):
            assert img.size == (128, 128)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / manifest["shards"][0]["file"], columns=["url", "split"]).to_pylist()
    for row in table:
        person = row["url"][:3]
        split_of_person.setdefault(person, set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of_person.values())
    assert len({next(iter(s)) for s in split_of_person.values()}) >= 2  # groups do spread over splits


def test_the_stored_face_is_the_box_resized(tmp_path):
    img = Image.open(io.BytesIO(_jpeg((178, 218), 1))).convert("RGB")
    out = prepare(img, DomainSpec("faces", "x", crop_box=FACE_BOX, size=128))
    expected = img.crop(FACE_BOX).resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_centre_crop_and_short_side_cap(tmp_path):
    img = Image.new("RGB", (150, 140), (10, 20, 30))
    img.putpixel((75, 70), (255, 0, 0))
    out = prepare(img, DomainSpec("aerial", "x", center_crop=128))
    assert out.size == (128, 128) and out.getpixel((64, 64)) == (255, 0, 0)
    assert prepare(img, DomainSpec("t", "x", center_crop=0)).size == (140, 140)
    big = Image.new("RGB", (1000, 500))
    assert prepare(big, DomainSpec("p", "x", max_short_side=250)).size == (500, 250)
    assert prepare(img, DomainSpec("p", "x", max_short_side=250)).size == (150, 140)  # never upscaled


def test_images_too_small_are_recorded_with_their_reason_and_the_rest_kept(tmp_path):
    folder = tmp_path / "aerial"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg((150, 150), 1))
    (folder / "small.jpg").write_bytes(_jpeg((100, 150), 2))
    (folder / "broken.jpg").write_bytes(b"not an image")
    manifest = build_domain_shards(DomainSpec("aerial", str(folder), center_crop=128), tmp_path / "out")
    refused = {r["file"]: r["reason"] for r in manifest["domain"]["refused"]}
    assert refused["small.jpg"] == "too_small" and "broken.jpg" in refused and "a.jpg" not in refused
    assert manifest["rows"] == 1


def test_a_rerun_is_up_to_date_and_another_preparation_is_refused(tmp_path):
    folder = _faces_folder(tmp_path, people=3, each=2)
    first = build_domain_shards(_faces_spec(folder), tmp_path / "out")
    again = build_domain_shards(_faces_spec(folder, quality=90), tmp_path / "out")
    assert again["up_to_date"] is True and again["shards"] == first["shards"]
    with pytest.raises(ShardError, match="another preparation"):
        build_domain_shards(_faces_spec(folder, quality=70), tmp_path / "out")
    (folder / "000000.jpg").write_bytes(_jpeg((178, 218), 999))  # the source changed
    with pytest.raises(ShardError, match="another preparation"):
        build_domain_shards(_faces_spec(folder), tmp_path / "out")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ShardError, match="not a domain shard set"):
        build_domain_shards(_faces_spec(folder), tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_a_crash_mid_write_leaves_nothing_behind(tmp_path, monkeypatch):
    folder = _faces_folder(tmp_path, people=3, each=2)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(domains, "_write_one_shard", boom)
    with pytest.raises(OSError, match="disk full"):
        build_domain_shards(_faces_spec(folder), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["faces"]


def test_the_loader_trains_on_a_domain(tmp_path):
    folder = _faces_folder(tmp_path, people=6, each=3)
    build_domain_shards(_faces_spec(folder, split={"train": 1.0}), tmp_path / "out")
    crops = list(ShardDataset(tmp_path / "out", "train", crop=128, seed=0))
    assert len(crops) == 18 and all(c.shape == (3, 128, 128) for c in crops)


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_box": (10, 10, 5, 20)}, "crop_box"),
    ({"crop_box": (0, 0, 10, 10), "center_crop": 5}, "not both"),
    ({"size": 4}, "size"),
    ({"group_by": "person"}, "group_by"),
    ({"split": {"train": 0.5}}, "sum to 1"),
    ({"max_short_side": 64, "size": 64}, "max_short_side"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(DomainError, match=message):
        DomainSpec("d", "x", **kwargs)


def test_missing_folder_and_missing_group_are_clear_errors(tmp_path):
    with pytest.raises(DomainError, match="does not exist"):
        build_domain_shards(DomainSpec("faces", str(tmp_path / "nope")), tmp_path / "out")
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg((64, 64), 1))
    with pytest.raises(DomainError, match="every image was refused"):
        build_domain_shards(DomainSpec("flat", str(folder), group_by="parent"), tmp_path / "out")
