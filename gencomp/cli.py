"""The `gencomp` command line: every stage, outside DVC and Prefect, plus compress/decompress/info/codecs.

The same library functions as the pipeline's stages do the work; this module only parses arguments and
reports. Errors print one line on stderr and exit non-zero, never a traceback: 2 for a usage error (a bad
option, checked against the same schema as params.yaml, ``gencomp/config.py``), 3 for a refused or corrupt
input file, 1 for anything else (an internal error; ``GENCOMP_TRACEBACK=1`` shows its traceback). Messages
are printed as text, never as rich markup, so a path such as ``x[/bold]`` prints as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
import typer.core
import yaml
from rich.console import Console
from rich.markup import escape

EXIT_USAGE = 2
EXIT_REFUSED = 3
console = Console()
err_console = Console(stderr=True)


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """The click exception class ``name``, from click and from the copy of click that typer ships (typer >= 0.20
    raises its own)."""
    modules = [click.exceptions]
    try:
        from typer import _click as typer_click

        modules.append(typer_click.exceptions)
    except ImportError:  # an older typer that uses click itself
        pass
    return tuple({getattr(m, name) for m in modules if hasattr(m, name)})


class _OneLineErrors(typer.core.TyperGroup):
    """Usage errors (bad option values, unknown options) as one ``error:`` line with exit 2, instead of click's
    usage box; any other exception as one line with exit 1, instead of a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_exceptions("NoArgsIsHelpError") as exc:
            print(exc.ctx.get_help() if exc.ctx else exc.format_message(), file=sys.stderr)
            sys.exit(EXIT_USAGE)
        except _click_exceptions("UsageError") as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            _print_error(f"{where}{exc.format_message()} (see --help)")
            sys.exit(EXIT_USAGE)
        except _click_exceptions("ClickException") as exc:
            _print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except _click_exceptions("Abort"):
            _print_error("aborted")
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("GENCOMP_TRACEBACK"):
                raise
            _print_error(f"internal error ({type(exc).__name__}: {exc}); GENCOMP_TRACEBACK=1 shows where")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="gencomp",
    help="Generative image compression research pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``message`` as one escaped line and exit with ``code``."""
    _print_error(message)
    raise typer.Exit(code)


def check_option(model: type, field: str, value: Any, option: str) -> Any:
    """Validate one command-line option against its field in the params schema (``gencomp/config.py``), so
    the command line and params.yaml accept the same values; a bad one is a usage error naming the option."""
    from typing import Annotated as _Annotated

    from pydantic import TypeAdapter, ValidationError

    info = model.model_fields[field]
    annotation = _Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    adapter = TypeAdapter(annotation)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        fail(f"{option} {value!r}: {exc.errors()[0]['msg']}")


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are read as YAML scalars (numbers, booleans, null, strings)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"setting {pair!r} is not key=value")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def _schema_default(section: str, name: str):
    """A setting's one default, from its section of the params schema (``gencomp/config.py``)."""
    import gencomp.config

    return getattr(gencomp.config, section).model_fields[name].default


def _run_and_print(status: str, work) -> None:
    """Run a stage's library call under a spinner and print its JSON summary; its refusals (ValueError, OSError:
    a bad folder, a refused append) are one error line, not a traceback."""
    try:
        with console.status(status):
            result = work()
    except (ValueError, OSError) as exc:
        fail(str(exc))
    console.print_json(json.dumps(result, default=str))


def _scrape_default(name: str):
    return _schema_default("ScrapeParams", name)


def _scrape_help(name: str) -> str:
    from gencomp.config import ScrapeParams

    return ScrapeParams.model_fields[name].description or ""


@app.command()
def scrape(
    start_urls: Annotated[Optional[list[str]], typer.Argument(help=_scrape_help("start_urls"))] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help=_scrape_help("out"))] = Path(_scrape_default("out")),
    allowed_domain: Annotated[
        Optional[list[str]], typer.Option(metavar="[SCHEME://]HOST[:PORT]", help=_scrape_help("allowed_domains"))
    ] = None,
    depth: Annotated[int, typer.Option(help=_scrape_help("depth"))] = _scrape_default("depth"),
    max_images: Annotated[int, typer.Option(help=_scrape_help("max_images"))] = _scrape_default("max_images"),
    min_width: Annotated[int, typer.Option(help=_scrape_help("min_width"))] = _scrape_default("min_width"),
    min_height: Annotated[int, typer.Option(help=_scrape_help("min_height"))] = _scrape_default("min_height"),
    format: Annotated[  # noqa: A002 - the option is --format
        Optional[list[str]], typer.Option(help=_scrape_help("formats") + " Repeatable; default: all.")
    ] = None,
    concurrency_per_domain: Annotated[
        int, typer.Option(help=_scrape_help("concurrency_per_domain"))
    ] = _scrape_default("concurrency_per_domain"),
    download_delay: Annotated[
        float, typer.Option(help=_scrape_help("download_delay"))
    ] = _scrape_default("download_delay"),
    user_agent: Annotated[str, typer.Option(help=_scrape_help("user_agent"))] = _scrape_default("user_agent"),
    timeout: Annotated[float, typer.Option(help=_scrape_help("timeout_s"))] = _scrape_default("timeout_s"),
    retries: Annotated[int, typer.Option(help=_scrape_help("retries"))] = _scrape_default("retries"),
    max_bytes: Annotated[int, typer.Option(help=_scrape_help("max_bytes"))] = _scrape_default("max_bytes"),
    max_pixels: Annotated[int, typer.Option(help=_scrape_help("max_pixels"))] = _scrape_default("max_pixels"),
    workers: Annotated[int, typer.Option(help=_scrape_help("workers"))] = _scrape_default("workers"),
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help=_scrape_help("allow_private_addresses"))
    ] = _scrape_default("allow_private_addresses"),
    allow_network: Annotated[
        Optional[list[str]], typer.Option(metavar="CIDR", help=_scrape_help("allowed_networks"))
    ] = None,
    demo_site: Annotated[bool, typer.Option(help="Crawl the embedded demo website instead of START_URLS.")] = False,
) -> None:
    """Crawl web pages for images into content-addressed files and a manifest.

    Defaults and checks are those of params.yaml's scrape section (gencomp.config.ScrapeParams), and the crawl
    command is built as `dvc repro` builds it, so both crawl a site alike.
    """
    from pydantic import ValidationError

    from gencomp.config import ScrapeParams

    if not start_urls and not demo_site:
        fail("give at least one START_URL, or --demo-site")
    if start_urls and demo_site:
        fail("give START_URLs or --demo-site, not both")
    values = dict(
        out=str(out), start_urls=list(start_urls or []), allowed_domains=list(allowed_domain or []), depth=depth,
        max_images=max_images, min_width=min_width, min_height=min_height,
        concurrency_per_domain=concurrency_per_domain,
        download_delay=download_delay, user_agent=user_agent, timeout_s=timeout, retries=retries,
        max_bytes=max_bytes, max_pixels=max_pixels, workers=workers, allow_private_addresses=allow_private,
        allowed_networks=list(allow_network or []),
    )
    if format:
        values["formats"] = list(format)
    try:
        params = ScrapeParams.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        fail(f"invalid scrape options: {problems}")
    # The crawl runs in its own process: gencomp never imports Scrapy, and Twisted's reactor cannot restart.
    from scraper.crawl import command_from_params

    code = subprocess.call(command_from_params(params))
    if code:
        fail(f"crawl failed (exit {code})", code)


@app.command()
def dedupe(
    images_dir: Annotated[Path, typer.Argument(help="Folder of images (a scrape output or any folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for clusters.parquet.")],
    threshold: Annotated[int, typer.Option(
        help="Hamming distance (of 64 bits) of the candidate search (verified) or of the clusters (hash).")
    ] = _schema_default("DedupeParams", "threshold"),
    method: Annotated[str, typer.Option(
        help="verified: hash candidates, each edge checked on thumbnails; hash: pHash/dHash clusters only.")
    ] = _schema_default("DedupeParams", "method"),
    verify_threshold: Annotated[float, typer.Option(help="Thumbnail score an edge needs to join (verified).")
                                ] = _schema_default("DedupeParams", "verify_threshold"),
    guard_threshold: Annotated[float, typer.Option(
        help="Score every member of a 3+ cluster needs against its representative (verified).")
    ] = _schema_default("DedupeParams", "guard_threshold"),
    hash_kind: Annotated[str, typer.Option("--hash", help="phash or dhash (method hash).")
                         ] = _schema_default("DedupeParams", "hash"),
    workers: Annotated[int, typer.Option(help="Hashing processes.")] = _schema_default("DedupeParams", "workers"),
) -> None:
    """Find exact and near-duplicate images; write clusters.parquet, pairs.parquet and a contact sheet."""
    from gencomp.config import DedupeParams
    from gencomp.data.dedupe import run_dedupe

    threshold = check_option(DedupeParams, "threshold", threshold, "--threshold")
    method = check_option(DedupeParams, "method", method, "--method")
    verify_threshold = check_option(DedupeParams, "verify_threshold", verify_threshold, "--verify-threshold")
    guard_threshold = check_option(DedupeParams, "guard_threshold", guard_threshold, "--guard-threshold")
    hash_kind = check_option(DedupeParams, "hash", hash_kind, "--hash")
    workers = check_option(DedupeParams, "workers", workers, "--workers")
    if not images_dir.is_dir():
        fail(f"{images_dir} is not a folder")
    manifest = images_dir / "manifest.parquet"
    _run_and_print("hashing and clustering...", lambda: run_dedupe(
        images_dir, out, manifest=manifest if manifest.exists() else None, threshold=threshold, hash_kind=hash_kind,
        method=method, verify_threshold=verify_threshold, guard_threshold=guard_threshold, workers=workers))


@app.command()
def shard(
    images_dir: Annotated[Path, typer.Argument(help="The folder that was deduplicated.")],
    clusters: Annotated[Path, typer.Option(help="clusters.parquet from `gencomp dedupe`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Parquet shards.")],
    target_mb: Annotated[float, typer.Option(help="Target shard size in MB.")] = _schema_default("ShardParams",
                                                                                                 "target_mb"),
    max_short_side: Annotated[Optional[int], typer.Option(
        help="Store every image as JPEG, upright, its short side capped at this (fast training reads).")] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality of the stored images (with --max-short-side).")
                       ] = _schema_default("ShardResize", "quality"),
) -> None:
    """Write the kept images as Parquet shards with a cluster-aware train/val/test split."""
    from gencomp.config import ShardParams, ShardResize
    from gencomp.data.shards import write_shards

    target_mb = check_option(ShardParams, "target_mb", target_mb, "--target-mb")
    quality = check_option(ShardResize, "quality", quality, "--quality")
    if max_short_side is not None:
        max_short_side = check_option(ShardResize, "max_short_side", max_short_side, "--max-short-side")
    if not images_dir.is_dir():
        fail(f"{images_dir} is not a folder")
    if not clusters.is_file():
        fail(f"{clusters} does not exist (run `gencomp dedupe` first)")
    resize = None if max_short_side is None else {"max_short_side": max_short_side, "quality": quality}
    _run_and_print("writing shards...", lambda: write_shards(clusters, images_dir, out, target_mb=target_mb,
                                                              resize=resize))


@app.command()
def domains(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Domains to build (entries of params.yaml's domains section); default: those in domains.enabled.")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Parent folder: each domain goes to OUT/<name> (default: domains.out).")] = None,
    folder: Annotated[Optional[Path], typer.Option(
        help="Read the images from this folder instead of domains.<name>.folder (one domain only).")] = None,
    params_path: Annotated[Path, typer.Option("--params", help="The params file that defines the domains.")
                           ] = Path("params.yaml"),
) -> None:
    """Build narrow domains (faces, aerial scenes...) as shard sets: cut, resized, split by group, terms kept."""
    from gencomp.config import ParamsError, load_params
    from gencomp.data.domains import build_domain_shards

    try:
        p = load_params(params_path).domains
    except ParamsError as exc:
        fail(str(exc))
    names = list(names or p.enabled)
    if not names:
        fail(f"no domain named and none enabled in {params_path} (domains.enabled); "
             f"domains: {', '.join(sorted(p.entries)) or 'none'}")
    unknown = [name for name in names if name not in p.entries]
    if unknown:
        fail(f"no domain {unknown[0]!r} in {params_path}; domains: {', '.join(sorted(p.entries)) or 'none'}")
    if folder is not None and len(names) != 1:
        fail(f"--folder replaces one domain's folder; name exactly one domain, not {len(names)}")
    parent = out if out is not None else Path(p.out)

    def build() -> dict:
        done = {}
        for name in names:
            manifest = build_domain_shards(p.entries[name].spec(name), parent / name, folder=folder)
            record = manifest["domain"]
            done[name] = {"out": str(parent / name), "images": record["images"], "refused": len(record["refused"]),
                          "split_counts": manifest.get("split_counts"), "up_to_date": manifest["up_to_date"],
                          "terms": record["spec"]["terms"]}
        return done

    _run_and_print(f"building {', '.join(names)}...", build)


@app.command()
def train(
    kind: Annotated[str, typer.Argument(help="gan or vaegan.")],
    data: Annotated[Path, typer.Option(help="Shards folder (from `gencomp shard` or the shard stage).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: checkpoint.pt, model.pt, logs.")],
    preset: Annotated[str, typer.Option(help="finetune, demo, cpu-full or gpu.")] = "demo",
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in OUT.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a preset key: key=value.")] = None,
    init_from: Annotated[Optional[str], typer.Option(
        help="Start from this model file's weights, or a zoo model's (e.g. gan-default; see `gencomp models`).")
    ] = None,
) -> None:
    """Train the GAN or the VAE-GAN with the same code the pipeline uses."""
    from gencomp.train.checkpoint import CHECKPOINT_NAME
    from gencomp.train.init_from import InitFromError, resolve_init_path
    from gencomp.train.loop import train as run_training
    from gencomp.train.presets import resolve_preset

    if kind not in ("gan", "vaegan"):
        fail(f"KIND must be gan or vaegan, not {kind!r}")
    overrides = parse_settings(set_ or [])
    if init_from is not None:
        overrides["init_from"] = init_from
    if overrides.get("init_from") and not resume:  # an unknown name is refused before any data is read
        try:
            resolve_init_path(str(overrides["init_from"]), kind)
        except InitFromError as exc:
            fail(str(exc))
    try:  # settings errors are the user's, and read better without a traceback
        resolve_preset(kind, preset, overrides)
    except ValueError as exc:
        fail(str(exc))
    if not resume and (out / CHECKPOINT_NAME).exists():  # a forgotten --resume must not overwrite hours of work
        fail(f"{out / CHECKPOINT_NAME} holds an earlier run: add --resume to continue it, or delete it "
             "(or choose another --out) to start over")
    if not data.is_dir():
        fail(f"{data} is not a folder (a shards folder from `gencomp shard`)")
    try:
        summary = run_training(kind, data_dir=data, out_dir=out, preset=preset, overrides=overrides,
                               resume=resume, progress=True)
    except (ValueError, FileNotFoundError) as exc:  # unusable data or checkpoint: the user's to fix
        fail(str(exc))
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

    from gencomp.config import EvalDataset, EvaluateParams
    from gencomp.evaluate import evaluate_folder, expand_grid

    if max_images is not None:
        max_images = check_option(EvalDataset, "max_images", max_images, "--max-images")
    if max_side is not None:
        max_side = check_option(EvalDataset, "max_side", max_side, "--max-side")
    workers = check_option(EvaluateParams, "workers", workers, "--workers")
    if not images_dir.is_dir():
        fail(f"{images_dir} is not a folder")
    if (grid is None) == (not codec):
        fail("give either --codec (with --setting/--sweep) or --grid FILE")
    allow_failures = False
    if grid is not None:
        from gencomp.config import ParamsError, load_grid

        try:
            grid_file = load_grid(grid)  # every entry checked against its codec's settings before any work
        except (OSError, ParamsError) as exc:
            fail(f"cannot use grid {grid}: {exc}")
        spec, allow_failures = grid_file.grid_spec(), grid_file.allow_failures
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
        from gencomp.codecs import get_codec

        for cell in cells:  # an unknown codec or setting is the command line's error, not every image's
            get_codec(cell.codec, **cell.settings)
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    try:
        path = evaluate_folder(images_dir, cells, out, dataset=dataset, samples_dir=out / "samples",
                               max_images=max_images, max_side=max_side, workers=workers, recursive=True)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    frame = pd.read_parquet(path)
    if frame.empty:
        fail(f"{images_dir}: no usable images (see {out / 'rejected.csv'} for the files refused)", EXIT_REFUSED)
    if len(frame):
        summary = frame.groupby("label", sort=False)[["bpp", "psnr", "ssim", "ms_ssim"]].mean().round(4)
        console.print(summary.to_string())
    failed = frame[frame["error"].fillna("") != ""] if "error" in frame else frame.iloc[:0]
    for _, row in failed.iterrows():
        line = _one_line(f"{row['label']} on {row['image']}: {row['error']}")
        err_console.print(f"[red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"wrote {path}", highlight=False, markup=False)
    if len(failed) and not allow_failures:
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
    if samples is not None and not samples.is_dir():
        fail(f"--samples {samples} is not a folder")
    try:
        import pyarrow.parquet as pq

        pq.read_metadata(results)
    except Exception as exc:  # not a Parquet file at all: a refused input
        fail(f"{results} is not a readable results.parquet ({_one_line(str(exc))})", EXIT_REFUSED)
    try:
        written = build_report(results, out, samples_dir=samples, dataset=dataset,
                               reference_points=KODAK_REFERENCE_POINTS if kodak_reference else None)
    except (ValueError, KeyError, OSError) as exc:
        fail(f"{results}: {exc}", EXIT_REFUSED)
    console.print_json(json.dumps({k: str(v) for k, v in written.items()}))


def _short(value: str | None, length: int = 12) -> str:
    return value[:length] if value else "-"


def _headline_text(headline: dict[str, float]) -> str:
    parts = []
    if "channels" in headline:
        parts.append(f"c{int(headline['channels'])}")
    if "psnr" in headline:
        parts.append(f"PSNR {headline['psnr']:.2f} dB")
    if "ssim" in headline:
        parts.append(f"SSIM {headline['ssim']:.3f}")
    if "bpp" in headline:
        parts.append(f"{headline['bpp']:.3f} bpp")
    return ", ".join(parts) or "-"


@app.command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every sidecar fact, full hashes).")] = False,
) -> None:
    """List the model zoo: kind, training domain, data hash, terms of use, size and in-domain numbers.

    Any of these names works wherever a model is named: a codec's `model` setting, --model, and train's
    --init-from. Models trained on research-only data (faces, aerial) are for research use only."""
    from rich.table import Table

    from gencomp.models import zoo

    listed = zoo.models()
    if as_json:
        console.print_json(json.dumps([m.as_dict() for m in listed]))
        return
    table = Table(title="gencomp model zoo", show_lines=True)
    for column in ("name", "kind", "domain", "status", "data sha256", "size", "in-domain (validation)", "terms"):
        table.add_column(column, overflow="fold")
    for m in listed:
        status = "installed" if m.installed else "not installed"
        if m.problems:
            status += " (" + "; ".join(m.problems) + ")"
        size = f"{m.size_bytes / 1e6:.1f} MB" if m.size_bytes is not None else "-"
        table.add_row(*(escape(text) for text in (
            m.name, m.kind, m.domain, status, _short(m.data_sha256), size, _headline_text(m.headline), m.terms)))
    console.print(table)
    console.print("Names work as a codec's model setting, --model and --init-from. Models trained on research-only "
                  "data are for research use only.", highlight=False, markup=False)


def _register_codec_commands() -> None:
    from gencomp.cli_codecs import register

    register(app)


_register_codec_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
