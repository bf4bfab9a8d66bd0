"""The report across domains: the cross-domain table (PSNR, SSIM, CR and the drop from in-domain), its heatmap and
the poster's Table 1 within the faces domain, from a synthetic results frame with known numbers."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest
from PIL import Image

from gencomp.evaluate import RESULT_COLUMNS
from gencomp.report import build_report, cross_domain_summary, load_results

# (label, codec, family, model, model domain, settings, tables, bpp, {test domain: (psnr, ssim)})
CELLS = [
    ("GAN faces (float z)", "gan-inversion", "gan", "gan-faces", "faces", {"model": "gan-faces", "bits": 32},
     "table1", 0.5, {"faces": (20.0, 0.60), "aerial": (14.0, 0.30)}),
    ("GAN faces 8 bits", "gan-inversion", "gan", "gan-faces", "faces", {"model": "gan-faces", "bits": 8},
     "table1", 0.25, {"faces": (18.0, 0.55), "aerial": (12.0, 0.25)}),
    ("VAE-GAN faces", "vaegan", "vaegan", "vaegan-faces", "faces", {"model": "vaegan-faces"},
     "table2", 0.25, {"faces": (30.0, 0.80), "aerial": (24.0, 0.60), "kodak": (26.0, 0.70)}),
    ("VAE-GAN photos", "vaegan", "vaegan", "vaegan-default", "photos", {"model": "vaegan-default"},
     "table2", 0.2, {"faces": (28.0, 0.75), "aerial": (25.0, 0.62), "kodak": (27.0, 0.72)}),
    ("GAN of a bare file", "gan-inversion", "gan", "runs/x.pt", "unknown", {"model": "runs/x.pt"},
     "", 0.5, {"faces": (15.0, 0.40), "aerial": (15.0, 0.40), "kodak": (15.0, 0.40)}),
    ("JPEG (1%)", "jpeg", "classical", "", "", {"quality": 1},
     "table1,table2", 0.3, {"faces": (22.0, 0.50), "aerial": (21.0, 0.45), "kodak": (23.0, 0.52)}),
    ("jpeg quality=50", "jpeg", "classical", "", "", {"quality": 50},
     "rd", 1.0, {"faces": (33.0, 0.95), "aerial": (32.0, 0.94), "kodak": (34.0, 0.96)}),
]  # fmt: skip
FAILED = ("GAN faces 8 bits", "faces", "img-b")  # the only failed unit


def _frame(cells=CELLS) -> pd.DataFrame:
    rows = []
    for index, (label, codec, family, model, domain, settings, tables, bpp, values) in enumerate(cells):
        for dataset, (psnr, ssim) in values.items():
            for image, offset in (("img-a", -1.0), ("img-b", 1.0)):  # means are the values above
                error = "RuntimeError: boom" if (label, dataset, image) == FAILED else None
                rows.append({
                    "dataset": dataset, "image": image, "sha256": f"{dataset}-{image}", "width": 64, "height": 64,
                    "cell": index, "codec": codec, "family": family, "fingerprint": "", "model": model,
                    "model_domain": domain, "label": label, "group": label, "settings": json.dumps(settings),
                    "tables": tables, "bytes": None if error else bpp * 64 * 64 / 8, "bpp": None if error else bpp,
                    "cr": None if error else 24 / bpp, "psnr": None if error else psnr + offset,
                    "ssim": None if error else ssim + 0.01 * offset, "ms_ssim": None if error else 0.9,
                    "haarpsi": None if error else 0.5, "gmsd": None if error else 0.1, "vif": None if error else 0.3,
                    "swd": None if error else 10.0, "swd_set": None if error else 9.0, "enc_ms": 1.0, "dec_ms": 1.0,
                    "error": error,
                })  # fmt: skip
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _csv_rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(_frame(), out, dataset="faces")


def test_the_cross_domain_table_has_the_known_cells_and_drops(report):
    rows = {(r["Method"], r["test domain"]): r for r in _csv_rows(report["cross_domain.csv"])}
    vae = rows["VAE-GAN faces", "aerial"]
    assert (vae["trained on"], vae["model"], vae["PSNR"], vae["SSIM"], vae["CR"]) == (
        "faces", "vaegan-faces", "24.00", "0.6000", "96.0")
    assert (vae["PSNR drop"], vae["SSIM drop"], vae["in-domain"]) == ("6.00", "0.2000", "no")
    own = rows["VAE-GAN faces", "faces"]
    assert (own["PSNR drop"], own["SSIM drop"], own["in-domain"]) == ("0.00", "0.0000", "yes")
    # kodak is the photos domain: the default VAE-GAN's own; it does better on faces (a negative drop)
    assert rows["VAE-GAN photos", "photos"]["in-domain"] == "yes"
    assert rows["VAE-GAN photos", "faces"]["PSNR drop"] == "-1.00"
    assert rows["VAE-GAN photos", "aerial"]["PSNR drop"] == "2.00"
    # the failed unit is left out of its mean: img-a only (20 - 2 - 1 = 17), so the drop to aerial is 17 - 12 = 5
    assert rows["GAN faces 8 bits", "faces"]["PSNR"] == "17.00"
    assert rows["GAN faces 8 bits", "aerial"]["PSNR drop"] == "5.00"
    # no in-domain test set: no drop; classical rows have no training domain
    assert rows["GAN of a bare file", "faces"]["trained on"] == "unknown"
    assert rows["GAN of a bare file", "faces"]["PSNR drop"] == "n/a"
    assert rows["JPEG (1%)", "aerial"]["trained on"] == "-" and rows["JPEG (1%)", "aerial"]["PSNR drop"] == "n/a"
    assert not any(method == "jpeg quality=50" for method, _ in rows)  # a classical RD point is no row here


def test_each_cell_is_compared_with_the_test_domains_own_model(report):
    rows = {(r["Method"], r["test domain"]): r for r in _csv_rows(report["cross_domain.csv"])}
    # down a column, same images: the faces VAE-GAN on photos (kodak) against the photos VAE-GAN, and back
    photos = rows["VAE-GAN faces", "photos"]
    assert (photos["PSNR vs own model"], photos["SSIM vs own model"], photos["own model"]) == (
        "-1.00", "-0.0200", "vaegan-default")
    faces = rows["VAE-GAN photos", "faces"]
    assert (faces["PSNR vs own model"], faces["own model"]) == ("-2.00", "vaegan-faces")
    # no aerial VAE-GAN; a GAN of other settings is no peer; classical rows have no own model
    assert rows["VAE-GAN faces", "aerial"]["PSNR vs own model"] == "n/a"
    assert rows["GAN of a bare file", "faces"]["own model"] == "-"
    assert rows["JPEG (1%)", "faces"]["PSNR vs own model"] == "n/a"
    line = next(line for line in report["cross_domain.md"].read_text().splitlines()
                if line.startswith("| VAE-GAN photos |"))
    assert "28.00 dB / 0.7500 / CR 120.0 (drop -1.00 dB, -0.0300; -2.00 dB, -0.0500 vs vaegan-faces)" in line


def test_the_own_model_is_the_best_in_domain_peer():
    # a second faces VAE-GAN with the same settings: the better of the two is the reference
    better = ("VAE-GAN faces 2", "vaegan", "vaegan", "runs/faces2.pt", "faces", {"model": "runs/faces2.pt"},
              "table2", 0.25, {"faces": (31.0, 0.70), "aerial": (20.0, 0.5)})
    cross = cross_domain_summary(_frame([*CELLS, better]), {})
    row = cross[(cross["label"] == "VAE-GAN photos") & (cross["dataset"] == "faces")].iloc[0]
    assert row["own_model"] == "runs/faces2.pt" and row["psnr_vs_own"] == pytest.approx(28.0 - 31.0)


def test_the_wide_table_puts_trained_domains_first(report):
    text = report["cross_domain.md"].read_text()
    header = text.splitlines()[2]
    assert header == "| Method | model | trained on | faces | photos | aerial |"
    line = next(line for line in text.splitlines() if line.startswith("| VAE-GAN faces |"))
    assert "30.00 dB / 0.8000 / CR 96.0 (in-domain)" in line
    assert "24.00 dB / 0.6000 / CR 96.0 (drop 6.00 dB, 0.2000)" in line


def test_the_heatmap_is_a_png_with_a_row_per_cell(report):
    image = Image.open(report["cross_domain.png"])
    assert image.format == "PNG" and image.width > 200 and image.height > 150
    assert "Across domains" in report["index.html"].read_text()


def test_table1_in_domain_compares_faces_gan_rows_with_jpeg_on_the_same_images(report):
    rows = _csv_rows(report["table1_in_domain_faces.csv"])
    assert [r["Method"] for r in rows] == ["GAN faces (float z)", "GAN faces 8 bits", "JPEG (1%)"]
    # the 8-bit row failed on img-b, so every row is measured on img-a alone (value - 1, SSIM - 0.01)
    assert [(r["PSNR"], r["SSIM"], r["CR"]) for r in rows] == [
        ("19.00", "0.5900", "48.0"), ("17.00", "0.5400", "96.0"), ("21.00", "0.4900", "80.0")]
    markdown = report["table1_in_domain_faces.md"].read_text()
    assert markdown.startswith("# Table 1 in-domain: `faces`")
    assert "against JPEG (quality 1) on the same images" in markdown and "1 image(s)" in markdown
    # only faces has GAN rows trained and tested on it (the bare file's domain is unknown)
    assert sorted(name for name in report if name.startswith("table1_in_domain")) == [
        "table1_in_domain_faces.csv", "table1_in_domain_faces.md"]


def test_one_model_domain_on_one_test_domain_adds_nothing(tmp_path):
    in_domain_only = [(*c[:8], {"faces": c[8]["faces"]}) for c in CELLS if c[4] in ("faces", "")]
    written = build_report(_frame(in_domain_only), tmp_path)
    assert not any(name.startswith(("cross_domain", "table1_in_domain")) for name in written)
    assert not (tmp_path / "cross_domain.csv").exists()


def test_cross_domain_output_is_deterministic(report, tmp_path):
    again = build_report(_frame(), tmp_path, dataset="faces")
    for name in ("cross_domain.csv", "cross_domain.md", "cross_domain.png", "table1_in_domain_faces.md"):
        assert again[name].read_bytes() == report[name].read_bytes(), name


def test_dataset_domains_name_a_test_set_domain(tmp_path):
    frame = _frame()
    frame["dataset"] = frame["dataset"].replace({"faces": "celeba-test"})
    cross = cross_domain_summary(frame, {"celeba-test": "faces"})
    own = cross[(cross["label"] == "VAE-GAN faces") & cross["in_domain"]]
    assert list(own["dataset"]) == ["faces"] and float(own["psnr"].iloc[0]) == pytest.approx(30.0)
    without = cross_domain_summary(frame, {})
    assert not without[without["label"] == "VAE-GAN faces"]["in_domain"].any()  # no faces test set by that name


def test_results_without_model_columns_read_as_unknown_domains():
    older = _frame().drop(columns=["model", "model_domain"])
    frame = load_results(older)
    domains = dict(zip(frame["label"], frame["model_domain"]))
    assert domains["VAE-GAN faces"] == "unknown" and domains["JPEG (1%)"] == ""
