"""Reports from a small synthetic results frame: table shapes and values, BD-rate, determinism."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gencomp.evaluate import RESULT_COLUMNS
from gencomp.report import build_report, sample_folder, slugify

JPEG_BPP = [0.2, 0.4, 0.8, 1.6]
JPEG_PSNR = [24.0, 28.0, 31.0, 34.0]
JPEG_MSSSIM = [0.80, 0.90, 0.95, 0.98]

# (label, codec, family, group, tables, mean bpp, mean psnr, mean ssim, mean ms_ssim)
CELLS = [
    *[
        (f"GAN {k}", "gan-inversion", "gan", "GAN", "table1", b / 2, p, 0.5 + 0.01 * k, m)
        for k, (b, p, m) in enumerate(zip(JPEG_BPP, JPEG_PSNR, JPEG_MSSSIM))
    ],
    ("VAE-GAN (8)", "vaegan", "vaegan", "VAE-GAN", "table2", 0.6, 30.0, 0.80, 0.96),
    ("VAE-GAN (2)", "vaegan", "vaegan", "VAE-GAN", "table2", 0.3, 27.0, 0.70, 0.90),
    ("JPEG (1%)", "jpeg", "classical", "JPEG (1%)", "table1,table2", 0.16, 22.0, 0.45, 0.70),
    *[
        (f"jpeg quality={q}", "jpeg", "classical", "jpeg", "rd", b, p, 0.6, m)
        for q, b, p, m in zip((5, 20, 50, 80), JPEG_BPP, JPEG_PSNR, JPEG_MSSSIM)
    ],
    *[
        (f"webp quality={q}", "webp", "classical", "webp", "rd", b, p, 0.9, m)
        for q, b, p, m in zip(
            (5, 20, 50, 80), (0.1, 0.2, 0.3, 0.4), (40, 41, 42, 43), (0.99, 0.991, 0.992, 0.993)
        )
    ],
]
WIDTH, HEIGHT = 64, 48


def _rows_for(dataset: str, image: str, offset: float) -> list[dict]:
    rows = []
    for index, (label, codec, family, group, tables, bpp, psnr, ssim, ms_ssim) in enumerate(CELLS):
        # two images per dataset, one above and one below the mean by the same amount
        b = bpp * (1 + 0.1 * offset)
        nbytes = b * WIDTH * HEIGHT / 8
        error = "RuntimeError: boom" if (label == "VAE-GAN (2)" and image == "img-b") else None
        rows.append(
            {
                "dataset": dataset,
                "image": image,
                "sha256": f"{dataset}-{image}",
                "width": WIDTH,
                "height": HEIGHT,
                "cell": index,
                "codec": codec,
                "family": family,
                "fingerprint": "",
                "label": label,
                "group": group,
                "settings": "{}",
                "tables": tables,
                "bytes": None if error else nbytes,
                "bpp": None if error else b,
                "cr": None if error else 24 / b,
                "psnr": None if error else psnr + 0.5 * offset,
                "ssim": None if error else ssim + 0.01 * offset,
                "ms_ssim": None if error else ms_ssim + 0.001 * offset * (1 - ms_ssim) * 10,
                # perceptual measures as functions of PSNR (the same for every codec): BD-rates equal PSNR's
                "haarpsi": None if error else (psnr + 0.5 * offset) / 50,
                "gmsd": None if error else 0.5 - (psnr + 0.5 * offset) / 100,
                "vif": None if error else 0.3 + 0.01 * offset,
                "swd": None if error else 100 - psnr + offset,
                "swd_set": None if error else 90 - psnr,
                "enc_ms": None if error else 10.0 + offset,
                "dec_ms": None if error else 5.0 + offset,
                "error": error,
            }
        )
    return rows


@pytest.fixture
def results() -> pd.DataFrame:
    rows = _rows_for("kodak", "img-a", -1) + _rows_for("kodak", "img-b", 1) + _rows_for("other", "x", 0)
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter


def _read_csv(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def test_poster_tables_shape_and_values(results, tmp_path):
    written = build_report(results, tmp_path, dataset="kodak")
    table1 = _read_csv(written["table1.csv"])
    assert table1[0] == ["Method", "SSIM", "PSNR", "CR", "HaarPSI", "GMSD", "VIF", "SWD"]
    assert [r[0] for r in table1[1:]] == ["GAN 0", "GAN 1", "GAN 2", "GAN 3", "JPEG (1%)"]  # spec order
    # GAN 0: ssim 0.5 +- 0.01, psnr 24 +- 0.5, bpp 0.1 * (1 -+ 0.1) -> mean 0.1 -> CR 240; SWD: the set's value
    assert table1[1] == ["GAN 0", "0.5000", "24.00", "240.0", "0.4800", "0.2600", "0.3000", "66.00"]
    assert table1[5] == ["JPEG (1%)", "0.4500", "22.00", "150.0", "0.4400", "0.2800", "0.3000", "68.00"]
    table2 = _read_csv(written["table2.csv"])
    assert [r[0] for r in table2[1:]] == ["VAE-GAN (8)", "VAE-GAN (2)", "JPEG (1%)"]
    # VAE-GAN (2) failed on img-b: the mean is img-a alone (psnr 26.5, ssim 0.69, bpp 0.27)
    assert table2[2][:4] == ["VAE-GAN (2)", "0.6900", "26.50", f"{24 / 0.27:.1f}"]

    md = written["table1.md"].read_text()
    assert "dataset `kodak`" in md
    assert "| Method | SSIM | PSNR | CR | HaarPSI | GMSD | VIF | SWD |" in md
    assert "| GAN 0 | 0.5000 | 24.00 | 240.0 | 0.4800 | 0.2600 | 0.3000 | 66.00 |" in md
    assert "sliced Wasserstein" in md
    assert "failed unit" not in md
    assert "1 failed unit(s)" in written["table2.md"].read_text()


def test_extended_table_and_metrics_json(results, tmp_path):
    written = build_report(results, tmp_path, dataset="kodak")
    extended = _read_csv(written["extended.csv"])
    header = extended[0]
    assert header[:4] == ["dataset", "Method", "group", "codec"]
    assert {"MS-SSIM", "bpp", "bytes", "enc ms", "dec ms", "n images", "failed"} <= set(header)
    assert {"HaarPSI", "GMSD", "VIF", "SWD", "SWD per image"} <= set(header)
    assert len(extended) == 1 + 2 * len(CELLS)
    assert {r[0] for r in extended[1:]} == {"kodak", "other"}
    row = {h: v for h, v in zip(header, next(r for r in extended[1:] if r[:2] == ["kodak", "VAE-GAN (2)"]))}
    assert row["n images"] == "1" and row["failed"] == "1"
    assert row["enc ms"] == "9.0" and row["bpp"] == "0.2700"
    # img-a alone: psnr 26.5 -> haarpsi 0.53, gmsd 0.235, per-image swd 100 - 27 - 1, set swd 90 - 27
    assert (row["HaarPSI"], row["GMSD"], row["VIF"]) == ("0.5300", "0.2350", "0.2900")
    assert (row["SWD"], row["SWD per image"]) == ("63.00", "72.00")

    metrics = json.loads(written["metrics.json"].read_text())
    assert metrics["dataset"] == "kodak"
    assert set(metrics) == {"dataset", "table1", "table2"}
    assert metrics["table1"]["GAN 0"] == {
        "ssim": 0.5, "psnr": 24, "cr": 240, "haarpsi": 0.48, "gmsd": 0.26, "vif": 0.3, "swd": 66
    }  # fmt: skip
    assert metrics["table2"]["JPEG (1%)"]["cr"] == 150
    assert list(metrics["table1"]) == sorted(metrics["table1"])  # sorted keys


def test_rd_data_and_bdrate(results, tmp_path):
    written = build_report(results, tmp_path, dataset="kodak")
    rd = _read_csv(written["rd.csv"])
    assert rd[0] == ["dataset", "group", "label", "bpp", "psnr", "ms_ssim_db", "haarpsi", "gmsd", "vif", "swd"]
    groups = [r[1] for r in rd[1:]]
    assert groups == ["GAN"] * 4 + ["VAE-GAN"] * 2 + ["JPEG (1%)"] + ["jpeg"] * 4 + ["webp"] * 4
    gan = [r for r in rd[1:] if r[1] == "GAN"]
    assert [float(r[3]) for r in gan] == pytest.approx([b / 2 for b in JPEG_BPP])
    assert float(gan[0][5]) == pytest.approx(-10 * math.log10(1 - 0.8), abs=1e-3)

    bd = _read_csv(written["bdrate.csv"])
    header, rows = bd[0], [dict(zip(bd[0], r)) for r in bd[1:]]
    assert header[:4] == ["dataset", "curve", "kind", "anchor"]
    by = {(r["curve"], r["anchor"]): r for r in rows}
    ours = {(c, a) for c in ("GAN", "VAE-GAN") for a in ("jpeg", "webp", "avif")}
    # then the classical sweeps against the other anchors, for context (single points and self-pairs left out)
    assert set(by) == ours | {("jpeg", "webp"), ("webp", "jpeg")}
    assert [r["kind"] for r in rows] == ["ours"] * 6 + ["classical"] * 2
    # the GAN curve is the JPEG sweep at half the rate: -50 % on both quality axes
    assert by["GAN", "jpeg"]["method"] == "cubic"
    assert float(by["GAN", "jpeg"]["BD-rate PSNR %"]) == pytest.approx(-50.0, abs=0.01)
    assert float(by["GAN", "jpeg"]["BD-rate MS-SSIM %"]) == pytest.approx(-50.0, abs=0.01)
    # HaarPSI and GMSD follow PSNR here: the same BD-rate whatever the direction of the axis
    assert float(by["GAN", "jpeg"]["BD-rate HaarPSI %"]) == pytest.approx(-50.0, abs=0.01)
    assert float(by["GAN", "jpeg"]["BD-rate GMSD %"]) == pytest.approx(-50.0, abs=0.01)
    # BD-quality: positive = better on both; GMSD = -PSNR / 100 + c, so its reduction is BD-PSNR / 100
    bd_psnr = float(by["GAN", "jpeg"]["BD-PSNR dB"])
    assert bd_psnr > 0
    assert float(by["GAN", "jpeg"]["BD-HaarPSI"]) == pytest.approx(bd_psnr / 50, abs=1e-4)
    assert float(by["GAN", "jpeg"]["BD-GMSD"]) == pytest.approx(bd_psnr / 100, abs=1e-4)
    assert by["VAE-GAN", "jpeg"]["method"] == "pchip"
    assert float(by["VAE-GAN", "jpeg"]["BD-rate PSNR %"]) < 0
    assert by["GAN", "webp"]["BD-rate PSNR %"] == "n/a (no overlap)"
    assert by["GAN", "webp"]["note"] == "n/a (no overlap)"  # said once, not again per quality axis
    assert by["GAN", "avif"]["note"] == "n/a (no avif curve)"
    assert "n/a (no overlap)" in written["bdrate.md"].read_text()


def test_figures_and_html(results, tmp_path):
    samples = tmp_path / "samples"
    folder = sample_folder(samples, "kodak", "img-a")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / "original.png")
    for label in ("GAN 0", "VAE-GAN (8)", "JPEG (1%)"):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(
            folder / f"{slugify(label)}.png"
        )
    refs = [
        {"name": "cheng2020-anchor q1", "bpp": 0.12, "psnr": 28.58, "ms_ssim": 0.924, "source": "CompressAI"}
    ]
    written = build_report(
        results, tmp_path / "out", samples_dir=samples, reference_points=refs, title="T & <x>"
    )
    for name in ("rd_psnr.png", "rd_msssim.png", "rd_haarpsi.png", "samples.png"):
        with Image.open(written[name]) as image:
            assert image.format == "PNG" and image.width > 200
            assert "Software" not in image.info
    html = written["index.html"].read_text()
    assert "<title>T &amp; &lt;x&gt;</title>" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    # three RD curves, the samples and (two test domains: kodak and other) the cross-domain heatmap
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "cross_domain.png" in written
    assert "cheng2020-anchor q1" in html and "<table>" in html
    assert "http://" not in html and "https://" not in html


def test_samples_show_each_classical_curve_at_the_learned_codecs_rate(results, tmp_path):
    from gencomp.report import _sample_panels, load_results, summarize

    folder = sample_folder(tmp_path, "kodak", "img-a")
    folder.mkdir(parents=True)
    for label in ("original", *[c[0] for c in CELLS if c[0] != "webp quality=5"]):
        Image.new("RGB", (WIDTH, HEIGHT)).save(folder / f"{slugify(label)}.png")
    frame = load_results(results)
    image, panels = _sample_panels(summarize(frame), frame, "kodak", tmp_path, None)
    titles = [title.split("\n")[0] for title, _ in panels]
    # the poster tables' cells, then the jpeg and webp RD curves at the point nearest GAN 0's rate on img-a
    # (0.09 bpp: jpeg's lowest, 0.18; webp's 0.09 has no reconstruction on disk, so its next, 0.18)
    assert image == "img-a"
    assert titles == ["Original", "GAN 0", "GAN 1", "GAN 2", "GAN 3", "VAE-GAN (8)", "VAE-GAN (2)", "JPEG (1%)",
                      "jpeg quality=5", "webp quality=20"]
    assert panels[-1][0] == f"webp quality=20\nCR {24 / 0.18:.1f}"


def test_rerun_is_byte_identical(results, tmp_path):
    samples = tmp_path / "samples"
    folder = sample_folder(samples, "kodak", "img-a")
    folder.mkdir(parents=True)
    Image.new("RGB", (WIDTH, HEIGHT), (10, 20, 30)).save(folder / "original.png")
    Image.new("RGB", (WIDTH, HEIGHT), (11, 21, 31)).save(folder / f"{slugify('GAN 0')}.png")
    first = build_report(results, tmp_path / "a", samples_dir=samples, dataset="kodak")
    second = build_report(
        results.iloc[::-1].reset_index(drop=True), tmp_path / "b", samples_dir=samples, dataset="kodak"
    )
    assert sorted(first) == sorted(second)
    expected = {
        "table1.md", "table1.csv", "table2.md", "table2.csv", "extended.md", "extended.csv", "metrics.json",
        "rd.csv", "rd_psnr.png", "rd_msssim.png", "rd_haarpsi.png", "bdrate.md", "bdrate.csv", "samples.png",
        "index.html", "cross_domain.md", "cross_domain.csv", "cross_domain.png",  # two test domains
    }  # fmt: skip
    assert set(first) == expected
    for name in expected:
        assert first[name].read_bytes() == second[name].read_bytes(), name
    assert not list((tmp_path / "a").glob(".*tmp"))


def test_parquet_path_input_and_default_dataset(results, tmp_path):
    path = tmp_path / "results.parquet"
    results.to_parquet(path, index=False)
    written = build_report(path, tmp_path / "out")
    assert "dataset `kodak`" in written["table1.md"].read_text()  # kodak is preferred when present
    assert "samples.png" not in written
    other = build_report(path, tmp_path / "out2", dataset="other")
    assert json.loads(other["metrics.json"].read_text())["dataset"] == "other"


def test_results_without_the_perceptual_columns(results, tmp_path):
    # results.parquet written before the perceptual columns existed: reported, the new columns n/a
    older = results.drop(columns=["haarpsi", "gmsd", "vif", "swd", "swd_set"])
    written = build_report(older, tmp_path, dataset="kodak")
    table1 = _read_csv(written["table1.csv"])
    assert table1[1] == ["GAN 0", "0.5000", "24.00", "240.0", "n/a", "n/a", "n/a", "n/a"]
    bd = _read_csv(written["bdrate.csv"])
    gan = next(r for r in (dict(zip(bd[0], row)) for row in bd[1:]) if (r["curve"], r["anchor"]) == ("GAN", "jpeg"))
    assert float(gan["BD-rate PSNR %"]) == pytest.approx(-50.0, abs=0.01)
    assert gan["BD-rate HaarPSI %"] == "n/a" and gan["note"] == "HaarPSI, GMSD not measured"
    assert json.loads(written["metrics.json"].read_text())["table1"]["GAN 0"]["haarpsi"] is None


def test_bad_inputs_raise(results, tmp_path):
    with pytest.raises(ValueError, match="not in the results"):
        build_report(results, tmp_path, dataset="nope")
    with pytest.raises(ValueError, match="lack column"):
        build_report(results.drop(columns=["psnr"]), tmp_path)
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "missing.parquet", tmp_path)
    with pytest.raises(ValueError, match="empty"):
        build_report(results.iloc[:0], tmp_path)
