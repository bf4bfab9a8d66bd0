"""The `gencomp` command line: every stage, outside DVC and Prefect, plus compress/decompress/info/codecs.

The same library functions as the pipeline's stages do the work; this module only parses arguments and
reports. Errors print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console

app = typer.Typer(
    name="gencomp",
    help="Generative image compression research pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are read as YAML scalars (numbers, booleans, null, strings)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"setting {pair!r} is not key=value")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


@app.command()
def scrape(
    start_urls: Annotated[Optional[list[str]], typer.Argument(help="Pages to start crawling from.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (manifest.parquet + images/).")] = Path(
        "data/raw"
    ),
    allowed_domain: Annotated[Optional[list[str]], typer.Option(help="Domains the crawl may fetch from.")] = None,
    depth: Annotated[int, typer.Option(help="Link depth to follow.")] = 3,
    max_images: Annotated[int, typer.Option(help="Stop after this many stored images (0: no limit).")] = 0,
    demo_site: Annotated[bool, typer.Option(help="Crawl the embedded demo website instead of START_URLS.")] = False,
) -> None:
    """Crawl web pages for images into content-addressed files and a manifest."""
    if not start_urls and not demo_site:
        fail("give at least one START_URL, or --demo-site")
    # The crawl runs in its own process: gencomp never imports Scrapy, and Twisted's reactor cannot restart.
    cmd = [sys.executable, "-m", "scraper.crawl", "--out", str(out), "--depth", str(depth),
           "--max-images", str(max_images)]
    for url in start_urls or []:
        cmd += ["--start-url", url]
    for domain in allowed_domain or []:
        cmd += ["--allowed-domain", domain]
    if demo_site:
        cmd.append("--demo-site")
    code = subprocess.call(cmd)
    if code:
        fail(f"crawl failed (exit {code})", code)


@app.command()
def dedupe(
    images_dir: Annotated[Path, typer.Argument(help="Folder of images (a scrape output or any folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for clusters.parquet.")],
    threshold: Annotated[int, typer.Option(
        help="Hamming distance (of 64 bits) of the candidate search (verified) or of the clusters (hash).")] = 8,
    method: Annotated[str, typer.Option(
        help="verified: hash candidates, each edge checked on thumbnails; hash: pHash/dHash clusters only.")] = "verified",
    verify_threshold: Annotated[float, typer.Option(help="Thumbnail score an edge needs to join (verified).")] = 0.85,
    guard_threshold: Annotated[float, typer.Option(
        help="Score every member of a 3+ cluster needs against its representative (verified).")] = 0.75,
    hash_kind: Annotated[str, typer.Option("--hash", help="phash or dhash (method hash).")] = "phash",
    workers: Annotated[int, typer.Option(help="Hashing processes.")] = 2,
) -> None:
    """Find exact and near-duplicate images; write clusters.parquet, pairs.parquet and a contact sheet."""
    from gencomp.data.dedupe import HASH_KINDS, METHODS, run_dedupe

    if not images_dir.is_dir():
        fail(f"{images_dir} is not a folder")
    if method not in METHODS:
        fail(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if hash_kind not in HASH_KINDS:
        fail(f"--hash must be one of {', '.join(HASH_KINDS)}, not {hash_kind!r}")
    manifest = images_dir / "manifest.parquet"
    with console.status("hashing and clustering..."):
        summary = run_dedupe(images_dir, out, manifest=manifest if manifest.exists() else None,
                             threshold=threshold, hash_kind=hash_kind, method=method,
                             verify_threshold=verify_threshold, guard_threshold=guard_threshold, workers=workers)
    console.print_json(json.dumps(summary, default=str))


@app.command()
def shard(
    images_dir: Annotated[Path, typer.Argument(help="The folder that was deduplicated.")],
    clusters: Annotated[Path, typer.Option(help="clusters.parquet from `gencomp dedupe`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Parquet shards.")],
    target_mb: Annotated[float, typer.Option(help="Target shard size in MB.")] = 64,
    max_short_side: Annotated[Optional[int], typer.Option(
        help="Store every image as JPEG, upright, its short side capped at this (fast training reads).")] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality of the stored images (with --max-short-side).")] = 90,
) -> None:
    """Write the kept images as Parquet shards with a cluster-aware train/val/test split."""
    from gencomp.data.shards import write_shards

    resize = None if max_short_side is None else {"max_short_side": max_short_side, "quality": quality}
    try:
        with console.status("writing shards..."):
            manifest = write_shards(clusters, images_dir, out, target_mb=target_mb, resize=resize)
    except ValueError as exc:  # ShardError too: a refused append or a bad setting, not a crash
        fail(str(exc))
    console.print_json(json.dumps(manifest, default=str))


@app.command()
def train(
    kind: Annotated[str, typer.Argument(help="gan or vaegan.")],
    data: Annotated[Path, typer.Option(help="Shards folder (from `gencomp shard` or the shard stage).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: checkpoint.pt, model.pt, logs.")],
    preset: Annotated[str, typer.Option(help="demo, cpu-full or gpu.")] = "demo",
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in OUT.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a preset key: key=value.")] = None,
) -> None:
    """Train the GAN or the VAE-GAN with the same code the pipeline uses."""
    from gencomp.train.checkpoint import CHECKPOINT_NAME
    from gencomp.train.loop import train as run_training
    from gencomp.train.presets import resolve_preset

    if kind not in ("gan", "vaegan"):
        fail(f"KIND must be gan or vaegan, not {kind!r}")
    overrides = parse_settings(set_ or [])
    try:  # settings errors are the user's, and read better without a traceback
        resolve_preset(kind, preset, overrides)
    except ValueError as exc:
        fail(str(exc))
    if not resume and (out / CHECKPOINT_NAME).exists():  # a forgotten --resume must not overwrite hours of work
        fail(f"{out / CHECKPOINT_NAME} holds an earlier run: add --resume to continue it, or delete it "
             "(or choose another --out) to start over")
    summary = run_training(kind, data_dir=data, out_dir=out, preset=preset, overrides=overrides,
                           resume=resume, progress=True)
    console.print_json(json.dumps(summary, default=str))


@app.command("eval")
def evaluate(
    images_dir: Annotated[Path, typer.Argument(help="Folder of images to evaluate on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for results.parquet.")],
    codec: Annotated[Optional[list[str]], typer.Option(help="Codec name (repeatable); see `gencomp codecs`.")] = None,
    setting: Annotated[Optional[list[str]], typer.Option("--setting", "-s", help="key=value for every codec.")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option(help="key=v1,v2,... to sweep a setting.")] = None,
    grid: Annotated[Optional[Path], typer.Option(help="YAML grid, the format of params.yaml evaluate.grid.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset name in the results (default: folder name).")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Use only the first N images.")] = None,
    max_side: Annotated[Optional[int], typer.Option(help="Downscale images larger than this.")] = None,
    workers: Annotated[int, typer.Option(help="Parallel units (threads).")] = 2,
) -> None:
    """Run codecs over a folder of images and write one row per image and setting."""
    import pandas as pd

    from gencomp.evaluate import evaluate_folder, expand_grid

    if not images_dir.is_dir():
        fail(f"{images_dir} is not a folder")
    if (grid is None) == (not codec):
        fail("give either --codec (with --setting/--sweep) or --grid FILE")
    if grid is not None:
        try:
            spec = yaml.safe_load(grid.read_text())
        except (OSError, yaml.YAMLError) as exc:
            fail(f"cannot read grid {grid}: {exc}")
        if not isinstance(spec, list):
            fail(f"grid {grid} must be a YAML list of entries like params.yaml evaluate.grid")
    else:
        settings = parse_settings(setting or [])
        sweeps = {}
        for item in sweep or []:
            key, sep, values = item.partition("=")
            if not sep:
                fail(f"sweep {item!r} is not key=v1,v2,...")
            sweeps[key] = [yaml.safe_load(v) for v in values.split(",")]
        spec = [{"codec": name, "settings": settings, **({"sweep": sweeps} if sweeps else {})} for name in codec]
    try:
        cells = expand_grid(spec)
    except (KeyError, ValueError, TypeError) as exc:
        fail(str(exc))
    path = evaluate_folder(images_dir, cells, out, dataset=dataset, samples_dir=out / "samples",
                           max_images=max_images, max_side=max_side, workers=workers, recursive=True)
    frame = pd.read_parquet(path)
    if len(frame):
        summary = frame.groupby("label", sort=False)[["bpp", "psnr", "ssim", "ms_ssim"]].mean().round(4)
        console.print(summary.to_string())
    failed = frame[frame["error"].fillna("") != ""] if "error" in frame else frame.iloc[:0]
    for _, row in failed.iterrows():
        err_console.print(f"[red]failed[/] {row['label']} on {row['image']}: {row['error']}")
    console.print(f"wrote {path}")
    if len(failed):
        raise typer.Exit(1)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results.parquet from `gencomp eval` or the evaluate stage.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for tables, curves and index.html.")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset the poster tables summarise.")] = None,
    samples: Annotated[Optional[Path], typer.Option(help="Samples folder written by the evaluation.")] = None,
    kodak_reference: Annotated[bool, typer.Option(
        help="Draw published Kodak results (CompressAI, HiFiC) on the RD curves; only for full-size Kodak.")] = False,
) -> None:
    """Build the tables, RD curves, BD-rates and the HTML report from evaluation results."""
    from gencomp.reference import KODAK_REFERENCE_POINTS
    from gencomp.report import build_report

    if not results.is_file():
        fail(f"{results} does not exist")
    written = build_report(results, out, samples_dir=samples, dataset=dataset,
                           reference_points=KODAK_REFERENCE_POINTS if kodak_reference else None)
    console.print_json(json.dumps({k: str(v) for k, v in written.items()}))


def _register_codec_commands() -> None:
    from gencomp.cli_codecs import register

    register(app)


_register_codec_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
