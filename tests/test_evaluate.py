"""The evaluation grid: spec expansion, per-unit cache, failures, samples, folder evaluation.

Uses small fake codecs registered here (PNG-backed), so it does not depend on the real codecs.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gencomp import evaluate
from gencomp.codecs.base import REGISTRY, Codec, Param, register
from gencomp.evaluate import RESULT_COLUMNS, Cell, expand_grid, run_grid


class _Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []

    def add(self, name: str, settings: dict) -> None:
        with self.lock:
            self.calls.append((name, json.dumps(settings, sort_keys=True)))

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()


ENCODES = _Counter()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class QuantizeCodec(Codec):
    """Keeps ``levels`` grey levels per channel, stores PNG: lossy, and fewer levels -> fewer bytes."""

    name = "test-quantize"
    family = "classical"
    codec_id = 241
    bitstream = "test-png"
    params = (Param("levels", "int", 16, "levels per channel"),)
    fingerprint_value = b""

    def encode(self, image):
        ENCODES.add(self.name, self.settings)
        step = 256 / self.settings["levels"]
        arr = np.asarray(image, dtype=np.float64)
        quantized = (np.floor(arr / step) * step + step / 2).clip(0, 255).astype(np.uint8)
        return _png(Image.fromarray(quantized, "RGB"))

    def decode(self, data):
        return Image.open(io.BytesIO(data)).convert("RGB")

    @property
    def fingerprint(self) -> bytes:
        return type(self).fingerprint_value


class LosslessCodec(Codec):
    name = "test-lossless"
    family = "gan"  # pretend to be one of ours
    codec_id = 242
    bitstream = "test-png"
    params = ()

    def encode(self, image):
        ENCODES.add(self.name, self.settings)
        return _png(image)

    def decode(self, data):
        return Image.open(io.BytesIO(data)).convert("RGB")


class BrokenCodec(Codec):
    name = "test-broken"
    family = "gan"
    codec_id = 243
    bitstream = "test-broken"
    params = (Param("mode", "str", "encode", "where to fail", choices=("encode", "size")),)

    def encode(self, image):
        ENCODES.add(self.name, self.settings)
        if self.settings["mode"] == "encode":
            raise RuntimeError("boom in encode")
        return b"x"

    def decode(self, data):
        return Image.new("RGB", (3, 3))  # wrong size on purpose


for _cls in (QuantizeCodec, LosslessCodec, BrokenCodec):
    if _cls.name not in REGISTRY.codecs:
        register(_cls)


def _images(n: int, size=(40, 32)) -> list[tuple[str, str, Image.Image]]:
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((size[0] * 2, size[1] * 2), Image.Resampling.BILINEAR)
    out = []
    for i in range(n):
        crop = photo.crop((i * 7, i * 5, i * 7 + size[0], i * 5 + size[1]))
        out.append((f"img{i:02d}", f"sha{i:02d}", crop))
    return out


@pytest.fixture(autouse=True)
def _reset_counter():
    ENCODES.reset()
    QuantizeCodec.fingerprint_value = b""
    yield


SPEC = [
    {"codec": "test-lossless", "label": "Lossless", "tables": ["table1"]},
    {
        "codec": "test-quantize",
        "settings": {"levels": 4},
        "label": "Quant (4)",
        "tables": ["table1", "table2"],
    },
    {"codec": "test-quantize", "sweep": {"levels": [8, 32]}, "tables": ["rd"]},
]


# ---------------------------------------------------------------- spec


def test_expand_grid_sweep_labels_groups_tables():
    cells = expand_grid(
        [
            {
                "codec": "jpeg",
                "settings": {"quality": 1},
                "label": "JPEG (1%)",
                "tables": ["table1", "table2"],
            },
            {"codec": "webp", "sweep": {"quality": [5, 10]}, "tables": "rd"},
            {"codec": "webp", "settings": {"method": 6}, "sweep": {"quality": [5]}, "tables": ["rd"]},
            {"codec": "avif", "settings": {"quality": 30, "speed": 8}},
            {"codec": "vaegan", "settings": {"channels": 8}, "label": "VAE-GAN (8)", "group": "VAE-GAN"},
            {"codec": "vaegan", "settings": {"channels": 2}, "label": "VAE-GAN (2)", "group": "VAE-GAN"},
        ]
    )
    assert [c.index for c in cells] == list(range(7))
    assert [c.label for c in cells] == [
        "JPEG (1%)",
        "webp quality=5",
        "webp quality=10",
        "webp method=6 quality=5",
        "avif quality=30 speed=8",
        "VAE-GAN (8)",
        "VAE-GAN (2)",
    ]
    assert [c.group for c in cells] == [
        "JPEG (1%)",
        "webp",
        "webp",
        "webp method=6",
        "avif quality=30 speed=8",
        "VAE-GAN",
        "VAE-GAN",
    ]
    assert cells[0].tables == ("table1", "table2")
    assert cells[1].tables == ("rd",)
    assert cells[3].settings == {"method": 6, "quality": 5}
    assert cells[3].settings_json == '{"method":6,"quality":5}'
    assert cells[0].slug == "jpeg-1"


def test_expand_grid_product_of_two_sweeps_and_label_prefix():
    cells = expand_grid([{"codec": "x", "label": "X", "sweep": {"b": [1, 2], "a": ["p", "q"]}}])
    assert [c.label for c in cells] == ["X a=p b=1", "X a=p b=2", "X a=q b=1", "X a=q b=2"]
    assert {c.group for c in cells} == {"X"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"codec": "jpeg", "qualty": 5}], "unknown key"),
        ([{"settings": {}}], "'codec'"),
        ([{"codec": "jpeg", "sweep": {"quality": []}}], "non-empty list"),
        ([{"codec": "jpeg", "settings": {"quality": 5}, "sweep": {"quality": [1]}}], "both a fixed setting"),
        ([{"codec": "jpeg", "label": "A"}, {"codec": "webp", "label": "A"}], "share the label"),
        ([{"codec": "jpeg", "label": "A b"}, {"codec": "webp", "label": "a-b"}], "same file name"),
        ([{"codec": "jpeg", "settings": {"q": float("nan")}}], "plain JSON"),
        ([{"codec": "jpeg", "tables": 3}], "'tables'"),
        ("jpeg", "list of dicts"),
    ],
)
def test_expand_grid_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(spec)


# ---------------------------------------------------------------- the grid and its cache


def test_run_grid_rows_metrics_and_cache(tmp_path):
    cells = expand_grid(SPEC)
    images = _images(3)
    frame = run_grid(cells, {"tiny": images}, cache_dir=tmp_path / "cache", workers=2)

    assert list(frame.columns) == RESULT_COLUMNS
    assert len(frame) == 4 * 3
    assert frame.attrs == {"units": 12, "computed": 12, "cached": 0, "failed": 0}
    assert len(ENCODES.calls) == 12
    # sorted by dataset, image, spec order
    assert list(frame["image"]) == [f"img{i:02d}" for i in range(3) for _ in range(4)]
    assert list(frame["cell"]) == [0, 1, 2, 3] * 3
    assert frame["error"].isna().all()

    lossless = frame[frame["label"] == "Lossless"]
    assert (lossless["psnr"] == math.inf).all()
    assert np.allclose(lossless["ssim"], 1.0) and np.allclose(lossless["ms_ssim"], 1.0)
    assert np.allclose(lossless["haarpsi"], 1.0) and (lossless["gmsd"] == 0).all()
    assert np.allclose(lossless["vif"], 1.0) and (lossless["swd"] == 0).all() and (lossless["swd_set"] == 0).all()
    lossy = frame[frame["label"] != "Lossless"]
    assert (lossy["haarpsi"] < 1).all() and (lossy["gmsd"] > 0).all() and (lossy["swd"] > 0).all()
    # the data set's SWD: one value per cell, over its three images
    assert (frame.groupby("label")["swd_set"].nunique() == 1).all()
    assert (lossy["swd_set"] > 0).all()
    row = frame.iloc[1]
    assert (
        row["label"] == "Quant (4)" and row["tables"] == "table1,table2" and row["settings"] == '{"levels":4}'
    )
    assert (row["width"], row["height"]) == (40, 32)
    assert row["bpp"] == pytest.approx(8 * row["bytes"] / (40 * 32))
    assert row["cr"] == pytest.approx(24 / row["bpp"])
    assert 10 < row["psnr"] < 40 and 0 < row["ssim"] < 1
    # fewer levels: fewer bytes and lower PSNR
    by_label = frame[frame["image"] == "img00"].set_index("label")
    assert by_label.loc["Quant (4)", "bytes"] < by_label.loc["test-quantize levels=32", "bytes"]
    assert by_label.loc["Quant (4)", "psnr"] < by_label.loc["test-quantize levels=8", "psnr"]
    assert set(frame["group"]) == {"Lossless", "Quant (4)", "test-quantize"}
    assert set(frame["family"]) == {"gan", "classical"}
    assert (frame["fingerprint"] == "").all()

    # second run: nothing new is computed and the results are the same
    ENCODES.reset()
    again = run_grid(cells, {"tiny": images}, cache_dir=tmp_path / "cache", workers=2)
    assert ENCODES.calls == []
    assert again.attrs["computed"] == 0 and again.attrs["cached"] == 12
    pd.testing.assert_frame_equal(frame, again)

    # one more sweep value: only its units are computed
    bigger = expand_grid(
        SPEC[:2] + [{"codec": "test-quantize", "sweep": {"levels": [8, 32, 64]}, "tables": ["rd"]}]
    )
    third = run_grid(bigger, {"tiny": images}, cache_dir=tmp_path / "cache", workers=2)
    assert sorted(ENCODES.calls) == [("test-quantize", '{"levels": 64}')] * 3
    assert third.attrs["computed"] == 3 and len(third) == 15


def test_entries_without_the_perceptual_measures_are_computed_again(tmp_path):
    cells = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4}}])
    images = _images(2)
    first = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    # an entry as written before the perceptual columns existed
    old = next((tmp_path / "units").rglob("*.json"))
    entry = json.loads(old.read_text())
    for name in ("haarpsi", "gmsd", "vif", "swd"):
        del entry[name]
    old.write_text(json.dumps(entry))
    # and a unit whose SWD descriptors are gone
    other = next(p for p in (tmp_path / "units").rglob("*.json") if p != old)
    descriptors = other.with_name(other.stem + ".swd.npz")
    assert descriptors.exists()
    descriptors.unlink()
    ENCODES.reset()
    second = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert len(ENCODES.calls) == 2 and second.attrs["computed"] == 2
    assert descriptors.exists() and "haarpsi" in json.loads(old.read_text())
    timings = ["enc_ms", "dec_ms"]
    pd.testing.assert_frame_equal(first.drop(columns=timings), second.drop(columns=timings))


def test_set_swd_is_cached_by_its_units(tmp_path):
    cells = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4}}])
    images = _images(3)
    first = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    (stored,) = list((tmp_path / "sets").rglob("*.json"))
    assert json.loads(stored.read_text())["swd_set"] == pytest.approx(first.loc[0, "swd_set"])
    stored.write_text(json.dumps({"swd_set": 12.5}))  # a rerun reads the stored value, not the descriptors
    assert (run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)["swd_set"] == 12.5).all()
    stored.write_text("{broken")
    again = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert again.loc[0, "swd_set"] == pytest.approx(first.loc[0, "swd_set"])
    # another set of images is another set
    fewer = run_grid(cells, {"d": images[:2]}, cache_dir=tmp_path, workers=1)
    assert len(list((tmp_path / "sets").rglob("*.json"))) == 2
    assert fewer.loc[0, "swd_set"] != pytest.approx(first.loc[0, "swd_set"])


def test_cache_is_keyed_by_fingerprint_and_image_content(tmp_path):
    cells = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4}}])
    images = _images(2)
    run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert len(ENCODES.calls) == 2

    ENCODES.reset()
    QuantizeCodec.fingerprint_value = b"\x01\x02"  # "retrained weights"
    frame = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert len(ENCODES.calls) == 2
    assert (frame["fingerprint"] == "0102").all()

    ENCODES.reset()
    # same id and sha256 but other pixels (e.g. the caller resized the image): not a cache hit
    resized = [(i, s, im.resize((20, 16))) for i, s, im in images]
    frame = run_grid(cells, {"d": resized}, cache_dir=tmp_path, workers=1)
    assert len(ENCODES.calls) == 2
    assert set(frame["width"]) == {20}


def test_default_settings_share_cache_with_explicit_ones(tmp_path):
    images = _images(1)
    run_grid(expand_grid([{"codec": "test-quantize"}]), {"d": images}, cache_dir=tmp_path, workers=1)
    ENCODES.reset()
    frame = run_grid(
        expand_grid([{"codec": "test-quantize", "settings": {"levels": 16}}]),
        {"d": images},
        cache_dir=tmp_path,
    )
    assert ENCODES.calls == [] and frame.attrs["cached"] == 1


def test_a_setting_added_later_keeps_earlier_caches_at_its_default(tmp_path, monkeypatch):
    images = _images(1)
    cells = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4}}])
    run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    monkeypatch.setattr(QuantizeCodec, "params", QuantizeCodec.params + (
        Param("search", "str", "plain", "a later encoder option", ("plain", "deep"), added_later=True),))
    ENCODES.reset()
    frame = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert ENCODES.calls == [] and frame.attrs["cached"] == 1
    assert json.loads(frame.loc[0, "settings"]) == {"levels": 4}
    deep = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4, "search": "deep"}}])
    frame = run_grid(deep, {"d": images}, cache_dir=tmp_path, workers=1)
    assert frame.attrs["computed"] == 1 and json.loads(frame.loc[0, "settings"])["search"] == "deep"


def test_parallel_units_share_the_cores_and_the_thread_count_comes_back(tmp_path, monkeypatch):
    seen = []
    encode = QuantizeCodec.encode
    monkeypatch.setattr(QuantizeCodec, "encode", lambda self, image: seen.append(torch.get_num_threads())
                        or encode(self, image))
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        run_grid(expand_grid([{"codec": "test-quantize"}]), {"d": _images(3)}, cache_dir=tmp_path, workers=2)
        assert seen == [2, 2, 2]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_failures_are_recorded_not_cached_and_do_not_stop_the_grid(tmp_path):
    spec = [
        {"codec": "test-quantize", "settings": {"levels": 4}, "label": "ok"},
        {"codec": "test-broken", "label": "broken encode"},
        {"codec": "test-broken", "settings": {"mode": "size"}, "label": "broken size"},
        {"codec": "no-such-codec", "label": "unknown"},
        {"codec": "test-quantize", "settings": {"levels": "many"}, "label": "bad setting"},
    ]
    images = _images(2)
    frame = run_grid(expand_grid(spec), {"d": images}, cache_dir=tmp_path, workers=2)
    assert len(frame) == 10
    errors = frame.set_index(["image", "label"])["error"]
    assert errors["img00", "ok"] is None
    assert "RuntimeError: boom in encode" in errors["img00", "broken encode"]
    assert "decoded image is 3x3" in errors["img01", "broken size"]
    assert (
        "cannot create codec" in errors["img00", "unknown"] and "unknown codec" in errors["img00", "unknown"]
    )
    assert "levels" in errors["img00", "bad setting"]
    failed = frame[frame["error"].notna()]
    assert failed["psnr"].isna().all() and failed["bytes"].isna().all()
    assert failed["haarpsi"].isna().all() and failed["swd_set"].isna().all()
    assert frame.loc[frame["error"].isna(), "swd_set"].notna().all()
    assert frame.attrs["failed"] == 8

    ENCODES.reset()
    again = run_grid(expand_grid(spec), {"d": images}, cache_dir=tmp_path, workers=2)
    # the good cell is cached, the failing units are tried again
    assert sorted(c[0] for c in ENCODES.calls) == ["test-broken"] * 4
    assert again.attrs["computed"] == 4


def test_unreadable_cache_entry_is_recomputed(tmp_path):
    cells = expand_grid([{"codec": "test-quantize", "settings": {"levels": 4}}])
    images = _images(1)
    first = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    (entry,) = list((tmp_path / "units").rglob("*.json"))
    entry.write_text('{"truncated": ')
    ENCODES.reset()
    second = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=1)
    assert len(ENCODES.calls) == 1
    assert second.loc[0, "bytes"] == first.loc[0, "bytes"]
    json.loads(entry.read_text())  # rewritten whole
    assert not list(tmp_path.rglob("*.tmp"))


def test_samples_for_first_images(tmp_path):
    cells = expand_grid(SPEC)
    images = _images(3)
    run_grid(cells, {"tiny": images}, cache_dir=tmp_path / "c", samples_dir=tmp_path / "s", sample_images=2)
    for image_id in ("img00", "img01"):
        folder = tmp_path / "s" / "tiny" / image_id
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(
            [
                "original.png",
                "lossless.png",
                "quant-4.png",
                "test-quantize-levels-8.png",
                "test-quantize-levels-32.png",
            ]
        )
        original = Image.open(folder / "original.png")
        assert np.array_equal(np.asarray(original), np.asarray({i: im for i, _, im in images}[image_id]))
        assert np.array_equal(np.asarray(Image.open(folder / "lossless.png")), np.asarray(original))
    assert not (tmp_path / "s" / "tiny" / "img02").exists()

    # a fresh samples folder is filled from the cache without encoding again
    ENCODES.reset()
    run_grid(cells, {"tiny": images}, cache_dir=tmp_path / "c", samples_dir=tmp_path / "s2", sample_images=2)
    assert ENCODES.calls == []
    assert (tmp_path / "s2" / "tiny" / "img01" / "quant-4.png").exists()


def test_custom_map_fn_gets_picklable_work(tmp_path):
    seen = []

    def pickling_map(fn, items):
        # what a Prefect or Dask map does: ship the function and the items to another process
        fn = pickle.loads(pickle.dumps(fn))
        items = pickle.loads(pickle.dumps(items))
        seen.extend(items)
        return [fn(item) for item in items]

    frame = run_grid(expand_grid(SPEC[:2]), {"d": _images(2)}, cache_dir=tmp_path, map_fn=pickling_map)
    assert len(seen) == 4 and frame["error"].isna().all()
    assert all(isinstance(v, (str, type(None))) for item in seen for v in item.values())


def test_bad_datasets_raise_clearly(tmp_path):
    cells = expand_grid(SPEC[:1])
    with pytest.raises(ValueError, match="appears twice"):
        run_grid(cells, {"d": _images(1) + _images(1)}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="PIL image"):
        run_grid(cells, {"d": [("a", "b", np.zeros((4, 4, 3)))]}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="share the label"):
        run_grid([Cell(0, "jpeg", {}, "A", "A"), Cell(1, "webp", {}, "A", "A")], {}, cache_dir=tmp_path)


def test_evaluate_folder_writes_parquet_and_lists_rejects(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for image_id, _, image in _images(2):
        image.save(folder / f"{image_id}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "notes.txt").write_text("not an image, not considered")
    out = tmp_path / "out"
    path = evaluate.evaluate_folder(folder, SPEC[:2], out, samples_dir=out / "samples")
    assert path == out / "results.parquet"
    frame = pd.read_parquet(path)
    assert list(frame.columns) == RESULT_COLUMNS
    assert sorted(set(frame["image"])) == ["img00", "img01"]
    assert set(frame["dataset"]) == {"images"}
    import hashlib

    assert frame.loc[0, "sha256"] == hashlib.sha256((folder / "img00.png").read_bytes()).hexdigest()
    rejected = pd.read_csv(out / "rejected.csv")
    assert list(rejected["reason"]) == ["not_an_image"] and rejected.loc[0, "path"].endswith("broken.png")
    assert (out / "samples" / "images" / "img00" / "quant-4.png").exists()
    assert (out / "cache" / "units").is_dir()

    with pytest.raises(NotADirectoryError):
        evaluate.evaluate_folder(tmp_path / "missing", SPEC, out)


def test_real_codecs_from_registry_if_available(tmp_path):
    # the real JPEG codec, through the same path the pipeline uses
    if "jpeg" not in REGISTRY.codecs:
        pytest.skip("the jpeg codec is not registered in this checkout")
    cells = expand_grid([{"codec": "jpeg", "sweep": {"quality": [10, 90]}}])
    frame = run_grid(cells, {"d": _images(1, size=(64, 48))}, cache_dir=tmp_path, workers=1)
    assert frame["error"].isna().all(), frame["error"].tolist()
    low, high = frame.iloc[0], frame.iloc[1]
    assert low["bytes"] < high["bytes"] and low["psnr"] < high["psnr"]
    assert Path(tmp_path / "units").is_dir()


def test_a_crash_mid_grid_loses_only_unfinished_units(tmp_path):
    cells = expand_grid(SPEC)
    images = _images(3)

    def crashing_map(fn, items):
        for item in items[:5]:
            fn(item)
        raise KeyboardInterrupt("killed mid-grid")

    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, {"d": images}, cache_dir=tmp_path, map_fn=crashing_map)
    assert len(list((tmp_path / "units").rglob("*.json"))) == 5
    ENCODES.reset()
    frame = run_grid(cells, {"d": images}, cache_dir=tmp_path, workers=2)
    assert frame.attrs["computed"] == 12 - 5 and len(ENCODES.calls) == 7
    assert frame["error"].isna().all()
