"""Reports from evaluation results: the poster's tables, an extended table, RD curves, BD-rates, a sample
figure, metrics for ``dvc metrics`` / plot data for ``dvc plots``, and one self-contained HTML page.

Aggregation (one dataset, one row per grid cell, failed units left out and counted):
- SSIM, PSNR, MS-SSIM, bpp, bytes, encode/decode time: arithmetic mean over images (PSNR averaged in dB, as
  CompressAI and most papers do);
- CR = 24 / mean bpp: the ratio of total raw to total compressed bits for equal-size images. (The mean of
  per-image ratios would be dominated by the few images that compress best.)
- MS-SSIM in dB on the RD plot = -10 log10(1 - mean MS-SSIM).
- HaarPSI, GMSD, VIF and per-image SWD (:mod:`gencomp.perceptual`): means over images. "SWD" in the tables is
  the data set's measure (``swd_set``): the sliced Wasserstein distance between the patch sets of all the
  originals and of all their reconstructions by the cell, not a mean of per-image values. Results written
  before these columns existed show them as n/a.

Output is deterministic: the same results give byte-identical Markdown, CSV and JSON (fixed decimals, sorted
keys), and PNGs are written without matplotlib's version stamp. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gencomp.atomic import write_bytes_atomic
from gencomp.bdrate import MIN_POINTS, NoOverlapError, bd_quality, bd_rate
from gencomp.metrics import HIGHER_IS_BETTER, ms_ssim_db
from gencomp.samples import ORIGINAL_SAMPLE_NAME, safe_name, sample_folder, slugify  # noqa: F401  (the layout it reads)

POSTER_TABLES = ("table1", "table2")
UNKNOWN_DOMAIN = "unknown"  # the training domain gencomp.models.zoo.model_domain gives a model without metadata
# Test sets whose name is not their domain; any other data set's domain is its name (faces, aerial, ...).
DATASET_DOMAINS = {"kodak": "photos"}
DEFAULT_ANCHORS = ("jpeg", "webp", "avif")
CLASSICAL_CODECS = frozenset({"jpeg", "webp", "avif", "jxl", "png", "bpg"})
REQUIRED_COLUMNS = ("dataset", "image", "codec", "label", "group", "tables", "bytes", "bpp", "psnr", "ssim",
                    "ms_ssim", "enc_ms", "dec_ms", "error")  # fmt: skip
PERCEPTUAL_COLUMNS = ("haarpsi", "gmsd", "vif", "swd", "swd_set")  # optional: older results lack them
PNG_METADATA = {"Software": None}
FIGURE_DPI = 100


# ---------------------------------------------------------------- small helpers


def _fmt(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.00"


def _json_number(value: Any, digits: int = 6) -> float | int | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None  # JSON has no inf / NaN; dvc metrics reads null as missing
    rounded = round(value, digits)
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    frame = pd.DataFrame([list(r) for r in rows], columns=list(header), dtype=object)
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_NUMBER = re.compile(r"^-?(\d+(\.\d*)?|inf)$|^n/a")


def _html_cell(value: Any) -> str:
    text = str(value)
    css = ' class="num"' if _NUMBER.match(text) else ""
    return f"<td{css}>{html.escape(text)}</td>"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _tables_of(value: Any) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return tuple(str(t) for t in value)


# ---------------------------------------------------------------- aggregation


def load_results(results: pd.DataFrame | str | Path) -> pd.DataFrame:
    """The results frame (a DataFrame or a Parquet/CSV path), checked for the columns reports need."""
    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.exists():
            raise FileNotFoundError(f"results file {path} does not exist")
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    elif isinstance(results, pd.DataFrame):
        frame = results.copy()
    else:
        raise TypeError(f"results must be a DataFrame or a path, got {type(results).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}")
    if "cell" not in frame.columns:  # spec order: order of first appearance
        frame["cell"] = pd.factorize(frame["label"])[0]
    if "family" not in frame.columns:
        frame["family"] = ""
    for column in PERCEPTUAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = math.nan
    frame["model"] = [_text(v) for v in frame["model"]] if "model" in frame.columns else ""
    domains = frame["model_domain"] if "model_domain" in frame.columns else [None] * len(frame)
    # results written before the column existed, or a generative cell without metadata: "unknown"
    frame["model_domain"] = [
        "" if _is_classical(str(codec), family) else (_text(domain) or UNKNOWN_DOMAIN)
        for codec, family, domain in zip(frame["codec"], frame["family"], domains)
    ]
    return frame


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _is_classical(codec: str, family: Any) -> bool:
    if isinstance(family, str) and family:
        return family == "classical"
    return codec in CLASSICAL_CODECS


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, cell): means over the images that did not fail (module docstring)."""
    frame = load_results(results)
    ok = frame["error"].isna() | (frame["error"].astype(str) == "")
    numeric = ["ssim", "psnr", "ms_ssim", *PERCEPTUAL_COLUMNS, "bpp", "bytes", "enc_ms", "dec_ms"]
    rows = []
    for (dataset, cell), part in frame.groupby(["dataset", "cell"], sort=True):
        good = part[ok.loc[part.index]]
        first = part.iloc[0]
        row = {
            "dataset": str(dataset),
            "cell": int(cell),
            "label": str(first["label"]),
            "group": str(first["group"]),
            "codec": str(first["codec"]),
            "classical": _is_classical(str(first["codec"]), first["family"]),
            "model": str(first["model"]),
            "model_domain": str(first["model_domain"]),
            "tables": _tables_of(first["tables"]),
            "n_images": len(good),
            "n_failed": int(len(part) - len(good)),
        }
        for column in numeric:
            values = pd.to_numeric(good[column], errors="coerce").astype("float64").to_numpy()
            row[column] = float(np.mean(values)) if len(values) and not np.isnan(values).any() else math.nan
        row["cr"] = 24.0 / row["bpp"] if row["bpp"] > 0 else (math.inf if row["bpp"] == 0 else math.nan)
        row["ms_ssim_db"] = ms_ssim_db(row["ms_ssim"]) if not math.isnan(row["ms_ssim"]) else math.nan
        rows.append(row)
    columns = ["dataset", "cell", "label", "group", "codec", "classical", "model", "model_domain", "tables",
               "n_images", "n_failed",
               *numeric, "cr", "ms_ssim_db"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def choose_dataset(results: pd.DataFrame, dataset: str | None) -> str:
    names = sorted(str(d) for d in results["dataset"].unique())
    if not names:
        raise ValueError("results are empty: nothing to report")
    if dataset is not None:
        if dataset not in names:
            raise ValueError(f"dataset {dataset!r} is not in the results (have {names})")
        return dataset
    return "kodak" if "kodak" in names else names[0]


# ---------------------------------------------------------------- tables

POSTER_HEADER = ("Method", "SSIM", "PSNR", "CR", "HaarPSI", "GMSD", "VIF", "SWD")
EXTENDED_HEADER = ("dataset", "Method", "group", "codec", "SSIM", "PSNR", "MS-SSIM", "HaarPSI", "GMSD", "VIF",
                   "SWD", "SWD per image", "bpp", "bytes", "CR", "enc ms", "dec ms", "n images",
                   "failed")  # fmt: skip
# quality axes of the BD table: (column of the summary, name in the header, unit of BD-quality)
BD_AXES = (("psnr", "PSNR", " dB"), ("ms_ssim_db", "MS-SSIM", " dB"), ("haarpsi", "HaarPSI", ""),
           ("gmsd", "GMSD", ""))  # fmt: skip
BD_HEADER = ("dataset", "curve", "kind", "anchor", "method", "points",
             *[h for _, name, unit in BD_AXES for h in (f"BD-rate {name} %", f"BD-{name}{unit}")],
             "note")  # fmt: skip
POSTER_NOTE = (
    "HaarPSI (1 = identical, higher is better), GMSD (0 = identical, lower is better) and VIF (pixel domain, "
    "1 = identical): means of per-image values. SWD: sliced Wasserstein distance x 1e3 between the Laplacian-"
    "pyramid patches of all the originals and of all their reconstructions (0 = same distribution, lower is "
    "better)."
)


def _poster_row(r: Any) -> list[str]:
    return [r.label, _fmt(r.ssim, 4), _fmt(r.psnr, 2), _fmt(r.cr, 1), _fmt(r.haarpsi, 4), _fmt(r.gmsd, 4),
            _fmt(r.vif, 4), _fmt(r.swd_set, 2)]  # fmt: skip


def poster_rows(summary: pd.DataFrame, dataset: str, table: str) -> list[list[str]]:
    part = summary[(summary["dataset"] == dataset) & summary["tables"].map(lambda t: table in t)]
    return [_poster_row(r) for r in part.sort_values("cell").itertuples()]


def _poster_markdown(table: str, dataset: str, summary: pd.DataFrame, rows: list[list[str]]) -> str:
    part = summary[(summary["dataset"] == dataset) & summary["tables"].map(lambda t: table in t)]
    counts = sorted(set(part["n_images"].tolist()))
    failed = int(part["n_failed"].sum())
    title = f"# {table.capitalize().replace('Table', 'Table ')}: dataset `{dataset}`"
    lines = [title, ""]
    lines.append(
        _markdown_table(POSTER_HEADER, rows) if rows else f"No grid cell lists {table!r} in its tables.\n"
    )
    images = ", ".join(str(c) for c in counts) if counts else "0"
    lines.append(
        f"Means over {images} image(s) of `{dataset}`. SSIM and PSNR (dB, RGB, peak 255): mean of per-image "
        "values. CR = 24 / mean bpp, bpp from the complete file (container header included). " + POSTER_NOTE
    )
    if failed:
        lines.append(f" {failed} failed unit(s) left out; see extended.md.")
    return "\n".join(lines).rstrip() + "\n"


def extended_rows(summary: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in summary.sort_values(["dataset", "cell"]).itertuples():
        rows.append([
            r.dataset, r.label, r.group, r.codec, _fmt(r.ssim, 4), _fmt(r.psnr, 2), _fmt(r.ms_ssim, 4),
            _fmt(r.haarpsi, 4), _fmt(r.gmsd, 4), _fmt(r.vif, 4), _fmt(r.swd_set, 2), _fmt(r.swd, 2),
            _fmt(r.bpp, 4), _fmt(r.bytes, 1), _fmt(r.cr, 1), _fmt(r.enc_ms, 1), _fmt(r.dec_ms, 1),
            str(r.n_images), str(r.n_failed),
        ])  # fmt: skip
    return rows


def metrics_json(summary: pd.DataFrame, dataset: str) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": dataset}
    part = summary[summary["dataset"] == dataset]
    for table in POSTER_TABLES:
        rows = part[part["tables"].map(lambda t, name=table: name in t)].sort_values("cell")
        out[table] = {
            r.label: {
                "ssim": _json_number(r.ssim), "psnr": _json_number(r.psnr), "cr": _json_number(r.cr),
                "haarpsi": _json_number(r.haarpsi), "gmsd": _json_number(r.gmsd), "vif": _json_number(r.vif),
                "swd": _json_number(r.swd_set),
            }
            for r in rows.itertuples()
        }  # fmt: skip
    return out


# ---------------------------------------------------------------- across domains

CROSS_DOMAIN_HEADER = ("Method", "codec", "model", "trained on", "test domain", "n images", "SSIM", "PSNR", "CR",
                       "PSNR drop", "SSIM drop", "in-domain", "PSNR vs own model", "SSIM vs own model",
                       "own model")  # fmt: skip
CROSS_DOMAIN_NOTE = (
    "Rows: the generative cells and the classical baselines of the poster tables, each with the domain its model "
    "was trained on; columns: test domains (a data set's name, kodak = photos; data sets of one domain pooled). "
    "Means over each domain's images that did not fail; CR = 24 / mean bpp. Drop = in-domain value minus this "
    "domain's (PSNR in dB, SSIM), positive = worse than on the model's own domain; n/a where the results have "
    "no test set of the model's domain. A drop reads along a row, so it mixes in how hard each test domain is. "
    "\"vs own model\" reads down a column, on the same images: this value minus that of the test domain's own "
    "model (the best cell of the same codec and settings, the model apart, trained on the test domain); "
    "negative = worse than a model trained there, n/a where no such model was evaluated. The heatmap shows it."
)


def _settings_of(value: Any) -> dict[str, Any]:
    try:
        settings = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        return {}
    return settings if isinstance(settings, dict) else {}


def with_test_domains(frame: pd.DataFrame, dataset_domains: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with its data sets replaced by their test domains (the original name kept in ``source``)."""
    pooled = frame.copy()
    pooled["source"] = pooled["dataset"].astype(str)
    pooled["dataset"] = [dataset_domains.get(name, name) for name in pooled["source"]]
    return pooled


def covers_several_domains(frame: pd.DataFrame, dataset_domains: Mapping[str, str]) -> bool:
    """More than one training domain among the generative rows, or more than one test domain."""
    model_domains = {d for d in frame["model_domain"] if d}
    test_domains = {dataset_domains.get(str(d), str(d)) for d in frame["dataset"]}
    return len(model_domains) > 1 or len(test_domains) > 1


def _ordered_domains(summary: pd.DataFrame) -> list[str]:
    """Test domains: those some model was trained on first (in cell order, so in-domain cells form a diagonal),
    then the rest by name."""
    present = set(summary["dataset"])
    trained = [d for d in dict.fromkeys(summary.sort_values("cell")["model_domain"]) if d in present]
    return trained + sorted(present - set(trained))


def _peer_keys(frame: pd.DataFrame) -> dict[int, str]:
    """cell -> its codec and settings without the model: cells with the same key differ only in their model."""
    keys = {}
    for cell, part in frame.groupby("cell", sort=True):
        first = part.iloc[0]
        settings = {k: v for k, v in _settings_of(first["settings"]).items() if k != "model"}
        keys[int(cell)] = json.dumps([str(first["codec"]), settings], sort_keys=True)
    return keys


def cross_domain_summary(frame: pd.DataFrame, dataset_domains: Mapping[str, str]) -> pd.DataFrame:
    """One row per (test domain, cell) of the cross-domain table, with ``psnr_drop``, ``ssim_drop`` (in-domain
    value minus this one; NaN without an in-domain test set), ``in_domain``, and ``psnr_vs_own``, ``ssim_vs_own``
    (this value minus the test domain's own model's: the best in-domain cell with the same codec and settings
    apart from the model; NaN without one) with ``own_model``, that model's name."""
    loaded = load_results(frame)
    summary = summarize(with_test_domains(loaded, dataset_domains))
    wanted = ~summary["classical"] | summary["tables"].map(lambda t: any(name in t for name in POSTER_TABLES))
    summary = summary[wanted].copy()
    own = summary[summary["dataset"] == summary["model_domain"]].set_index("cell")
    summary["in_domain"] = summary["dataset"] == summary["model_domain"]
    for metric in ("psnr", "ssim"):
        reference = summary["cell"].map(own[metric]) if len(own) else math.nan
        summary[f"{metric}_drop"] = pd.to_numeric(reference, errors="coerce") - summary[metric]
    summary["peer"] = summary["cell"].map(_peer_keys(loaded))
    peers = summary[summary["in_domain"] & ~summary["classical"]]
    best = peers.sort_values(["psnr", "cell"], ascending=[False, True]).drop_duplicates(["peer", "dataset"])
    best = best.set_index(["peer", "dataset"])
    index = pd.MultiIndex.from_frame(summary[["peer", "dataset"]])
    found = index.isin(best.index) & ~summary["classical"].to_numpy()
    summary["own_model"] = [best.loc[key, "model"] if ok else "" for key, ok in zip(index, found, strict=True)]
    for metric in ("psnr", "ssim"):
        reference = [best.loc[key, metric] if ok else math.nan for key, ok in zip(index, found, strict=True)]
        summary[f"{metric}_vs_own"] = summary[metric] - np.asarray(reference, dtype=float)
    order = {d: k for k, d in enumerate(_ordered_domains(summary))}
    summary["domain_order"] = summary["dataset"].map(order)
    return summary.sort_values(["cell", "domain_order"]).reset_index(drop=True)


def cross_domain_rows(cross: pd.DataFrame) -> list[list[str]]:
    return [
        [r.label, r.codec, r.model or "-", r.model_domain or "-", r.dataset, str(r.n_images), _fmt(r.ssim, 4),
         _fmt(r.psnr, 2), _fmt(r.cr, 1), _fmt(r.psnr_drop, 2), _fmt(r.ssim_drop, 4), "yes" if r.in_domain else "no",
         _fmt(r.psnr_vs_own, 2), _fmt(r.ssim_vs_own, 4), r.own_model or "-"]
        for r in cross.itertuples()
    ]  # fmt: skip


def _cross_domain_cell(r: Any) -> str:
    text = f"{_fmt(r.psnr, 2)} dB / {_fmt(r.ssim, 4)} / CR {_fmt(r.cr, 1)}"
    if r.in_domain:
        return text + " (in-domain)"
    notes = []
    if not (math.isnan(r.psnr_drop) and math.isnan(r.ssim_drop)):
        notes.append(f"drop {_fmt(r.psnr_drop, 2)} dB, {_fmt(r.ssim_drop, 4)}")
    if not math.isnan(r.psnr_vs_own):
        notes.append(f"{_signed(r.psnr_vs_own, 2)} dB, {_signed(r.ssim_vs_own, 4)} vs {r.own_model}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _signed(value: float, digits: int) -> str:
    text = _fmt(value, digits)
    return text if text.startswith("-") else "+" + text


def cross_domain_matrix(cross: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The wide table: one row per cell (method, model, training domain), one column per test domain, each
    "PSNR dB / SSIM / CR (drop)"; "-" where a cell was not evaluated on a domain."""
    domains = list(dict.fromkeys(cross.sort_values("domain_order")["dataset"]))
    header = ["Method", "model", "trained on", *domains]
    rows = []
    for _, part in cross.groupby("cell", sort=True):
        first = part.iloc[0]
        by_domain = {r.dataset: _cross_domain_cell(r) for r in part.itertuples()}
        rows.append([first["label"], first["model"] or "-", first["model_domain"] or "-",
                     *[by_domain.get(d, "-") for d in domains]])  # fmt: skip
    return header, rows


def cross_domain_png(cross: pd.DataFrame) -> bytes:
    """Heatmap, rows = cells, columns = test domains: the colour is the PSNR against the test domain's own model
    (red = worse than a model trained there; grey = no such model evaluated, or in-domain), the text PSNR and that
    difference."""
    import matplotlib

    domains = list(dict.fromkeys(cross.sort_values("domain_order")["dataset"]))
    cells = list(dict.fromkeys(cross.sort_values("cell")["cell"]))
    gap = np.full((len(cells), len(domains)), np.nan)
    psnr = np.full_like(gap, np.nan)
    own = np.zeros(gap.shape, dtype=bool)
    labels = []
    for i, cell in enumerate(cells):
        part = cross[cross["cell"] == cell]
        first = part.iloc[0]
        labels.append(f"{first['label']} [{first['model_domain'] or 'classical'}]")
        for r in part.itertuples():
            j = domains.index(r.dataset)
            psnr[i, j], own[i, j] = r.psnr, r.in_domain
            gap[i, j] = math.nan if r.in_domain else r.psnr_vs_own
    finite = np.abs(gap[np.isfinite(gap)])
    limit = max(float(finite.max()) if finite.size else 0.0, 0.5)
    figure = _new_figure(2.0 + 1.6 * len(domains), 1.2 + 0.45 * len(cells))
    axes = figure.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
    image = axes.imshow(np.ma.masked_invalid(gap), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(cells)):
        for j in range(len(domains)):
            if math.isnan(psnr[i, j]):
                text = "-"
            elif own[i, j]:
                text = f"{psnr[i, j]:.2f} dB\nin-domain"
            elif math.isnan(gap[i, j]):
                text = f"{psnr[i, j]:.2f} dB"
            else:
                text = f"{psnr[i, j]:.2f} dB\n{_signed(gap[i, j], 2)} vs own"
            dark = math.isfinite(gap[i, j]) and abs(gap[i, j]) > 0.6 * limit  # white text on the deep colours
            axes.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    axes.set_xticks(range(len(domains)), domains)
    axes.set_yticks(range(len(cells)), labels, fontsize=7)
    axes.set_xlabel("test domain")
    axes.set_title("PSNR by test domain; colour: against the test domain's own model of the same codec (dB)",
                   fontsize=9)
    figure.colorbar(image, ax=axes, label="PSNR minus the own model's (dB)")
    figure.tight_layout()
    return _png_bytes(figure)


def in_domain_table1(frame: pd.DataFrame,
                     dataset_domains: Mapping[str, str]) -> dict[str, tuple[list[list[str]], int, bool]]:
    """The poster's Table 1 within each domain a GAN was trained on and tested on: the gan-inversion cells whose
    model's domain is that test domain, then JPEG at quality 1, all on the same images (those on which every one
    of these cells succeeded). {domain: (rows, number of images, whether a JPEG quality-1 cell was there)}."""
    pooled = with_test_domains(load_results(frame), dataset_domains)
    ok = pooled["error"].isna() | (pooled["error"].astype(str) == "")
    gan = (pooled["codec"] == "gan-inversion") & (pooled["model_domain"] == pooled["dataset"])
    jpeg_q1 = (pooled["codec"] == "jpeg") & pooled["settings"].map(lambda v: _settings_of(v).get("quality") == 1)
    tables = {}
    for domain in dict.fromkeys(pooled[gan].sort_values("cell")["dataset"]):
        if domain == UNKNOWN_DOMAIN:
            continue
        chosen = pooled[(pooled["dataset"] == domain) & (gan | jpeg_q1)]
        cells = chosen["cell"].nunique()
        good = chosen[ok.loc[chosen.index]].groupby(["source", "image"])["cell"].nunique()
        complete = set(good[good == cells].index)
        same_images = chosen[[key in complete for key in zip(chosen["source"], chosen["image"])]]
        summary = summarize(same_images) if len(same_images) else summarize(chosen.iloc[:0])
        order = summary.sort_values(["classical", "cell"])
        tables[domain] = ([_poster_row(r) for r in order.itertuples()], len(complete),
                          bool(chosen["codec"].eq("jpeg").any()))
    return tables


def _in_domain_markdown(domain: str, rows: list[list[str]], images: int, has_jpeg: bool) -> str:
    baseline = ("against JPEG (quality 1) on the same images" if has_jpeg
                else "(the results hold no JPEG quality-1 cell on these images to compare with)")
    lines = [f"# Table 1 in-domain: `{domain}`", "",
             _markdown_table(POSTER_HEADER, rows) if rows else "No gan-inversion cell succeeded on every image.\n",
             f"GAN inversion with models trained on {domain}, on the {domain} test images, {baseline}: means over the "
             f"{images} image(s) on which every row succeeded. Rows as in the poster's Table 1 (float z, then "
             "8/6/4-bit latents, in grid order). SSIM and PSNR (dB, RGB, peak 255): mean of per-image values. "
             "CR = 24 / mean bpp, bpp from the complete file. " + POSTER_NOTE
             + " SWD here is each cell's over all the images of the data set it decoded."]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- RD curves and BD-rate


def rd_points(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per-cell mean points of one dataset, ordered by group (first cell) and bpp."""
    part = summary[(summary["dataset"] == dataset) & summary["bpp"].map(lambda v: math.isfinite(v) and v > 0)]
    part = part.copy()
    part["group_order"] = part.groupby("group")["cell"].transform("min")
    return part.sort_values(["group_order", "bpp", "cell"]).reset_index(drop=True)


RD_HEADER = ("dataset", "group", "label", "bpp", "psnr", "ms_ssim_db", "haarpsi", "gmsd", "vif", "swd")


def rd_csv_rows(points: pd.DataFrame, dataset: str) -> list[list[str]]:
    return [
        [dataset, r.group, r.label, _fmt(r.bpp, 6), _fmt(r.psnr, 4), _fmt(r.ms_ssim_db, 4), _fmt(r.haarpsi, 4),
         _fmt(r.gmsd, 4), _fmt(r.vif, 4), _fmt(r.swd_set, 2)]
        for r in points.itertuples()
    ]  # fmt: skip


def _curve(points: pd.DataFrame, quality: str) -> tuple[np.ndarray, np.ndarray]:
    keep = points[np.isfinite(points[quality].to_numpy(dtype=float))]
    return keep["bpp"].to_numpy(dtype=float), keep[quality].to_numpy(dtype=float)


def _bd_pair(anchor: pd.DataFrame, test: pd.DataFrame, quality: str) -> tuple[str, str, str, str]:
    """(method, BD-rate %, BD-quality, note) for one quality axis; BD-quality positive = the test is better."""
    ra, qa = _curve(anchor, quality)
    rt, qt = _curve(test, quality)
    if len(ra) == 0 or len(rt) == 0:
        return "", "n/a", "n/a", NOT_MEASURED
    n = min(len(ra), len(rt))
    if n < MIN_POINTS["pchip"]:
        return "", "n/a", "n/a", f"n/a (too few points: {len(rt)} vs {len(ra)})"
    method = "cubic" if n >= MIN_POINTS["cubic"] else "pchip"
    try:
        rate = bd_rate(ra, qa, rt, qt, method=method)
    except NoOverlapError:
        return method, "n/a (no overlap)", "n/a", "n/a (no overlap)"
    except ValueError as exc:
        return method, "n/a", "n/a", f"n/a ({exc})"
    higher_is_better = HIGHER_IS_BETTER.get(quality, True)
    try:
        delta = bd_quality(ra, qa, rt, qt, method=method, higher_is_better=higher_is_better)
        quality_delta = _fmt(delta, 3 if quality in ("psnr", "ms_ssim_db") else 4)
    except ValueError:
        quality_delta = "n/a (no overlap)"
    return method, _fmt(rate, 2), quality_delta, ""


NOT_MEASURED = "not measured"


def _bd_notes(notes: Sequence[tuple[str, str]]) -> str:
    """One note per row: the PSNR and MS-SSIM notes as they are (the same reasons mostly), those of the
    perceptual axes named when they say something else, and axes the results lack (written before they
    existed) listed once."""
    missing = [name for name, note in notes if note == NOT_MEASURED]
    plain = [note for name, note in notes[:2] if note and note != NOT_MEASURED]
    kept = plain + [f"{name}: {note}" for name, note in notes[2:]
                    if note and note != NOT_MEASURED and note not in plain]  # fmt: skip
    if missing:
        kept.append(f"{', '.join(missing)} not measured")
    return "; ".join(dict.fromkeys(kept))


def _anchor_group(points: pd.DataFrame, groups: list[str], anchor: str) -> str | None:
    """The anchor codec's longest classical curve (its sweep, not a single table point)."""
    candidates = [
        g
        for g in groups
        if (points[points["group"] == g]["codec"] == anchor).all()
        and points[points["group"] == g]["classical"].all()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda g: (int((points["group"] == g).sum()), -groups.index(g)))


def bdrate_rows(points: pd.DataFrame, dataset: str, anchors: Sequence[str]) -> list[list[str]]:
    """Our curves against each anchor; then, as context, the other classical curves against the anchors."""
    groups = list(dict.fromkeys(points["group"]))
    size = {g: int((points["group"] == g).sum()) for g in groups}
    ours = [g for g in groups if not points[points["group"] == g]["classical"].all()]
    anchor_groups = {a: _anchor_group(points, groups, a) for a in anchors}
    classical = [g for g in groups if g not in ours and size[g] >= MIN_POINTS["pchip"]]
    rows = []
    for kind, curves in (("ours", ours), ("classical", classical)):
        for group in curves:
            test = points[points["group"] == group]
            for anchor, anchor_group in anchor_groups.items():
                if anchor_group == group:
                    continue
                if anchor_group is None:
                    if kind == "ours":
                        rows.append([dataset, group, kind, anchor, "", str(len(test)),
                                     *["n/a"] * (2 * len(BD_AXES)), f"n/a (no {anchor} curve)"])  # fmt: skip
                    continue
                ref = points[points["group"] == anchor_group]
                pairs = [_bd_pair(ref, test, quality) for quality, _, _ in BD_AXES]
                method = next((m for m, _, _, _ in pairs if m), "")
                notes = _bd_notes([(name, note) for (_, name, _), (_, _, _, note) in zip(BD_AXES, pairs)])
                rows.append([dataset, group, kind, anchor_group, method, f"{len(test)} vs {len(ref)}",
                             *[v for _, rate, delta, _ in pairs for v in (rate, delta)], notes])  # fmt: skip
    return rows


# ---------------------------------------------------------------- figures


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(
        buffer, format="png", dpi=FIGURE_DPI, metadata=PNG_METADATA, bbox_inches="tight", pad_inches=0.1
    )
    return buffer.getvalue()


def _new_figure(width: float, height: float):
    # Figure + Agg canvas directly: no pyplot global state, safe from worker threads
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


RD_AXIS_LABELS = {
    "psnr": ("PSNR (dB, RGB)", "PSNR"),
    "ms_ssim_db": ("MS-SSIM (dB) = -10 log10(1 - MS-SSIM)", "MS-SSIM"),
    "haarpsi": ("HaarPSI (1 = identical)", "HaarPSI"),
}


def rd_figure_png(points: pd.DataFrame, quality: str, *, dataset: str, reference_points=None) -> bytes:
    """PSNR (quality='psnr'), MS-SSIM dB ('ms_ssim_db') or HaarPSI ('haarpsi') against bpp, one line per
    group; published reference points (PSNR and MS-SSIM only) as black crosses."""
    figure = _new_figure(7.5, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(64)]
    markers = "osD^v<>px*h"
    groups = list(dict.fromkeys(points["group"]))
    all_bpp = list(points["bpp"])
    for i, group in enumerate(groups):
        curve = points[points["group"] == group]
        curve = curve[np.isfinite(curve[quality].to_numpy(dtype=float))]
        if curve.empty:
            continue
        classical = bool(curve["classical"].all())
        axes.plot(
            curve["bpp"], curve[quality], linestyle="--" if classical else "-", marker=markers[i % len(markers)],
            color=colors[i % len(colors)], label=group, linewidth=1.5, markersize=5,
        )  # fmt: skip
    for k, ref in enumerate(reference_points if quality in ("psnr", "ms_ssim_db") else []):
        key = "psnr" if quality == "psnr" else "ms_ssim"
        if ref.get(key) is None or ref.get("bpp") is None:
            continue
        y = float(ref[key]) if quality == "psnr" else ms_ssim_db(float(ref[key]))
        axes.plot([ref["bpp"]], [y], linestyle="none", marker="X", color="black", markersize=7)
        axes.annotate(
            str(ref.get("name", "")),
            (ref["bpp"], y),
            textcoords="offset points",
            xytext=(6, 10 * (k % 3) - 10),  # staggered: published points sit close together
            fontsize=7,
        )
        all_bpp.append(float(ref["bpp"]))
    positive = [b for b in all_bpp if b > 0]
    if positive and max(positive) / min(positive) > 20:
        axes.set_xscale("log")  # generative codecs sit orders of magnitude below the classical ones
    axes.set_xlabel("bits per pixel")
    ylabel, name = RD_AXIS_LABELS[quality]
    axes.set_ylabel(ylabel)
    axes.set_title(f"Rate-distortion on {dataset}: {name}")
    axes.grid(True, which="both", alpha=0.3)
    if groups:
        axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return _png_bytes(figure)


def _sample_panels(summary, results, dataset, samples_dir, sample_image):
    """(title, path) for the original, each table1/table2 cell that has a reconstruction on disk, and each
    classical RD curve at the rate nearest the first generative cell's."""
    root = Path(samples_dir) / safe_name(dataset)
    if not root.is_dir():
        return None, []
    frame = results[results["dataset"] == dataset]
    images = sorted(dict.fromkeys(str(i) for i in frame["image"]))
    by_folder = {safe_name(i): i for i in images}
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in by_folder)
    if sample_image is not None:
        folders = [safe_name(sample_image)] if safe_name(sample_image) in folders else []
    if not folders:
        return None, []
    folder, image = root / folders[0], by_folder[folders[0]]
    part = summary[summary["dataset"] == dataset].sort_values("cell")
    chosen = part[part["tables"].map(lambda t: any(name in t for name in POSTER_TABLES))]
    if chosen.empty:
        chosen = part
    rows_of_image = frame[frame["image"] == image].set_index("label")
    panels = (
        [("Original", folder / f"{ORIGINAL_SAMPLE_NAME}.png")]
        if (folder / f"{ORIGINAL_SAMPLE_NAME}.png").exists()
        else []
    )
    for r in chosen.itertuples():
        path = folder / f"{slugify(r.label)}.png"
        if not path.exists():
            continue
        cr = rows_of_image["cr"].get(r.label) if "cr" in rows_of_image.columns else None
        if cr is None or (isinstance(cr, float) and math.isnan(cr)):
            bpp = rows_of_image["bpp"].get(r.label)
            cr = 24.0 / bpp if bpp else math.nan
        panels.append((f"{r.label}\nCR {_fmt(cr, 1)}", path))
    return image, panels + _nearest_rate_panels(part, chosen, rows_of_image, folder)


def _nearest_rate_panels(part: pd.DataFrame, chosen: pd.DataFrame, rows_of_image: pd.DataFrame,
                         folder: Path) -> list[tuple[str, Path]]:
    """Each classical RD curve (WebP, AVIF, ...) at its point nearest in rate, on this image, to the first
    generative cell of the tables: what the codecs people use show at the learned codec's rate."""
    generative = [r.label for r in chosen.itertuples() if not r.classical]
    bpp = pd.to_numeric(rows_of_image["bpp"], errors="coerce") if "bpp" in rows_of_image.columns else None
    target = bpp.get(generative[0]) if generative and bpp is not None else None
    if target is None or not (math.isfinite(target) and target > 0):
        return []
    panels = []
    curves = part[part["classical"] & ~part["cell"].isin(set(chosen["cell"]))]
    for _, curve in curves.groupby("group", sort=False):
        rates = {r.label: bpp.get(r.label) for r in curve.itertuples()
                 if (folder / f"{slugify(r.label)}.png").exists()}
        rates = {label: b for label, b in rates.items() if b is not None and math.isfinite(b) and b > 0}
        if len(curve) < 2 or not rates:
            continue
        label = min(rates, key=lambda k: (abs(math.log(rates[k] / target)), k))
        panels.append((f"{label}\nCR {_fmt(24.0 / rates[label], 1)}", folder / f"{slugify(label)}.png"))
    return panels


def samples_figure_png(panels: Sequence[tuple[str, Path]], *, dataset: str, image: str) -> bytes:
    from matplotlib.image import imread

    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    first = imread(panels[0][1])
    aspect = first.shape[0] / first.shape[1]
    figure = _new_figure(4.0 * columns, 4.0 * aspect * rows + 0.6 * rows + 0.4)
    for k, (title, path) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, k + 1)
        axes.imshow(imread(path), interpolation="antialiased")
        axes.set_title(title, fontsize=8)
        axes.set_axis_off()
    figure.suptitle(f"{dataset} / {image}", fontsize=10)
    figure.tight_layout()
    return _png_bytes(figure)


# ---------------------------------------------------------------- HTML

HTML_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eee; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0 1.5em; }
p.note { color: #555; font-size: 0.85em; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(*, title: str, dataset: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(
        f"<section>\n<h2>{html.escape(heading)}</h2>\n{content}</section>\n" for heading, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>Tables and curves on dataset <code>{html.escape(dataset)}</code>.</p>\n"
        f"{body}</body>\n</html>\n"
    )


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img src="{_data_uri(png)}" alt="{html.escape(alt)}">\n'


# ---------------------------------------------------------------- the report


def build_report(
    results: pd.DataFrame | str | Path,
    out_dir: str | Path,
    *,
    samples_dir: str | Path | None = None,
    reference_points: Sequence[Mapping[str, Any]] | None = None,
    title: str = "gencomp evaluation report",
    dataset: str | None = None,
    anchors: Sequence[str] = DEFAULT_ANCHORS,
    sample_image: str | None = None,
    dataset_domains: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns ``{name: path}`` of what was written.

    ``dataset`` picks the dataset of the poster tables, RD curves, BD-rates and samples (default: 'kodak' if
    present, else the first by name); the extended table covers all datasets. ``reference_points`` are
    published numbers drawn as labelled markers: dicts with name, bpp, psnr, ms_ssim (optional), source.
    ``samples_dir`` is the folder :func:`gencomp.evaluate.run_grid` wrote; without it (or without samples of
    the dataset) no samples.png is written. ``sample_image`` picks the image (default: the first by name).

    When the results cover more than one model training domain (``model_domain``) or more than one test domain
    (a data set's name, or its entry in ``dataset_domains``, which extends :data:`DATASET_DOMAINS`), the report
    adds the cross-domain table (cross_domain.md/.csv), its heatmap (cross_domain.png) and, for each domain a
    GAN was trained and tested on, the poster's Table 1 within that domain (table1_in_domain_<domain>.md/.csv).
    """
    frame = load_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = choose_dataset(frame, dataset)
    summary = summarize(frame)
    written: dict[str, Path] = {}

    def write(name: str, data: bytes | str) -> None:
        path = out / name
        write_bytes_atomic(path, data.encode() if isinstance(data, str) else data)
        written[name] = path

    sections: list[tuple[str, str]] = []
    for table in POSTER_TABLES:
        rows = poster_rows(summary, dataset, table)
        write(f"{table}.csv", _csv(POSTER_HEADER, rows))
        write(f"{table}.md", _poster_markdown(table, dataset, summary, rows))
        note = (f'<p class="note">Dataset {html.escape(dataset)}; means over images; CR = 24 / mean bpp. '
                f"{html.escape(POSTER_NOTE)}</p>\n")  # fmt: skip
        sections.append(
            (
                table.capitalize().replace("Table", "Table "),
                (_html_table(POSTER_HEADER, rows) if rows else "<p>No cells.</p>\n") + note,
            )
        )

    ext = extended_rows(summary)
    write("extended.csv", _csv(EXTENDED_HEADER, ext))
    write("extended.md", "# Extended results (all datasets)\n\n" + _markdown_table(EXTENDED_HEADER, ext))
    write("metrics.json", json.dumps(metrics_json(summary, dataset), indent=2, sort_keys=True) + "\n")

    points = rd_points(summary, dataset)
    write("rd.csv", _csv(RD_HEADER, rd_csv_rows(points, dataset)))
    refs = [dict(r) for r in reference_points or []]
    rd_psnr = rd_figure_png(points, "psnr", dataset=dataset, reference_points=refs)
    rd_ms = rd_figure_png(points, "ms_ssim_db", dataset=dataset, reference_points=refs)
    rd_haarpsi = rd_figure_png(points, "haarpsi", dataset=dataset)
    write("rd_psnr.png", rd_psnr)
    write("rd_msssim.png", rd_ms)
    write("rd_haarpsi.png", rd_haarpsi)
    ref_note = ""
    if refs:
        ref_rows = [[str(r.get("name", "")), _fmt(r.get("bpp"), 3), _fmt(r.get("psnr"), 2), _fmt(r.get("ms_ssim"), 3),
                     str(r.get("source", ""))] for r in refs]  # fmt: skip
        ref_note = "<p>Reference points (published, drawn as black crosses):</p>\n" + _html_table(
            ("name", "bpp", "PSNR", "MS-SSIM", "source"), ref_rows
        )
    sections.append(
        (
            "Rate-distortion curves",
            _img_tag(rd_psnr, "RD curve, PSNR") + _img_tag(rd_ms, "RD curve, MS-SSIM")
            + _img_tag(rd_haarpsi, "RD curve, HaarPSI") + ref_note,
        )
    )

    bd = bdrate_rows(points, dataset, anchors)
    write("bdrate.csv", _csv(BD_HEADER, bd))
    bd_intro = (f"# BD-rate on `{dataset}`\n\nOur curves (kind 'ours'), then the other classical curves for context, "
                "against the classical anchors over the overlapping range; "
                "negative BD-rate = fewer bits for the same quality. Method: cubic fit with 4+ points per curve, "
                "else piecewise cubic (pchip). BD-quality columns: mean difference at equal rate, positive = the "
                "curve is better; for GMSD (lower is better) that is the mean reduction, anchor minus curve.\n\n")  # fmt: skip
    write(
        "bdrate.md",
        bd_intro
        + (_markdown_table(BD_HEADER, bd) if bd else "No curves with two or more points in the results.\n"),
    )
    sections.append(
        (
            "BD-rate",
            _html_table(BD_HEADER, bd)
            if bd
            else "<p>No curves with two or more points in the results.</p>\n",
        )
    )

    if samples_dir is not None:
        image, panels = _sample_panels(summary, frame, dataset, samples_dir, sample_image)
        if panels:
            samples_png = samples_figure_png(panels, dataset=dataset, image=image)
            write("samples.png", samples_png)
            sections.append(("Samples", _img_tag(samples_png, f"samples of {image}")))

    domains = {**DATASET_DOMAINS, **(dataset_domains or {})}
    if covers_several_domains(frame, domains):
        sections += _cross_domain_files(frame, domains, write)

    sections.append(("Extended results", _html_table(EXTENDED_HEADER, ext)))
    write("index.html", render_html(title=title, dataset=dataset, sections=sections))
    return written


def _cross_domain_files(frame: pd.DataFrame, domains: Mapping[str, str], write) -> list[tuple[str, str]]:
    """Write the cross-domain table, its heatmap and the in-domain Table 1s; their HTML sections."""
    sections = []
    cross = cross_domain_summary(frame, domains)
    if len(cross):
        long_rows = cross_domain_rows(cross)
        header, wide = cross_domain_matrix(cross)
        write("cross_domain.csv", _csv(CROSS_DOMAIN_HEADER, long_rows))
        write("cross_domain.md", "# Across domains\n\n" + _markdown_table(header, wide) + "\n" + CROSS_DOMAIN_NOTE
              + "\n\n" + _markdown_table(CROSS_DOMAIN_HEADER, long_rows))
        heatmap = cross_domain_png(cross)
        write("cross_domain.png", heatmap)
        sections.append(("Across domains", _html_table(header, wide)
                         + f'<p class="note">{html.escape(CROSS_DOMAIN_NOTE)}</p>\n'
                         + _img_tag(heatmap, "PSNR against the test domain's own model, by model and test domain")))
    for domain, (rows, images, has_jpeg) in in_domain_table1(frame, domains).items():
        name = f"table1_in_domain_{slugify(domain)}"
        write(f"{name}.csv", _csv(POSTER_HEADER, rows))
        markdown = _in_domain_markdown(domain, rows, images, has_jpeg)
        write(f"{name}.md", markdown)
        sections.append((f"Table 1 in-domain ({domain})", (_html_table(POSTER_HEADER, rows) if rows else
                         "<p>No cells.</p>\n") + f'<p class="note">{html.escape(markdown.splitlines()[-1])}</p>\n'))
    return sections
