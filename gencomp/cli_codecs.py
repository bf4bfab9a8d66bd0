"""The codec commands of the ``gencomp`` CLI: compress, decompress, info, codecs.

``register(app)`` adds them to a typer app (``gencomp/cli.py`` calls it). Files or directories: a directory
in gives a directory out with the same relative paths, suffixes replaced (``.gcz`` / ``.png``), and a progress
bar. Exit codes: 0 ok; 2 usage (bad option, unknown codec or setting, missing input, unusable model file);
3 a refused or corrupt file (not an image, bad ``.gcz``, wrong model, unreachable target rate). In directory
mode every file is tried, each failure is reported on stderr, and the exit code is 3 if any failed.
Outputs are written atomically (temp file + rename), so a failure never leaves a half-written file.

Inputs are never written over: an output that is its own input, or a directory run whose output directory is
the input directory or inside it, is refused (exit 2) whatever the options; an output file that already exists
is refused unless ``--force`` is given. Both checks run before any file is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

EXIT_USAGE = 2
EXIT_REFUSED = 3
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".jxl"})
CONTAINER_SUFFIX = ".gcz"

_out = Console()
_err = Console(stderr=True)


class _Usage(Exception):
    """A usage error: message for stderr, exit 2."""


def _fail(message: str, code: int) -> None:
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _refusal_types() -> tuple[type[BaseException], ...]:
    from gencomp.codecs.classical import TargetRateUnreachable
    from gencomp.codecs.container import ContainerError
    from gencomp.data.images import ImageRejected

    return (ContainerError, ImageRejected, TargetRateUnreachable)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _check_outputs(pairs: list[tuple[Path, Path]], force: bool) -> None:
    """Refuse a run that would write over one of its inputs, or (without ``force``) over any existing file."""
    inputs = [p.resolve() for p, _ in pairs]
    input_set = set(inputs)
    existing = []
    for src, dst in pairs:
        if dst.resolve() in input_set or _same_file(src, dst):
            raise _Usage(f"refusing to write {dst} over an input file; choose another output")
        if dst.exists():
            if dst.is_dir():
                raise _Usage(f"output {dst} is a directory")
            existing.append(dst)
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise _Usage(f"{existing[0]}{more} already exist(s); add --force to replace")


def _plan(src: Path, dst: Path, suffixes: frozenset[str], new_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every matching file under a directory mirrored into ``dst``."""
    if not src.exists():
        raise _Usage(f"{src}: no such file or directory")
    if src.is_file():
        if dst.is_dir():
            return [(src, dst / (src.stem + new_suffix))]
        return [(src, dst)]
    if dst.exists() and not dst.is_dir():
        raise _Usage(f"{src} is a directory, so the output {dst} must be a directory too")
    src_real, dst_real = src.resolve(), dst.resolve()
    if dst_real == src_real or src_real in dst_real.parents:
        where = "the input directory" if dst_real == src_real else "inside the input directory"
        raise _Usage(f"output directory {dst} is {where} {src}; an in-place run would mix outputs with (and could "
                     "replace) the inputs. Choose an output directory outside it")
    pairs: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
        target = dst / path.relative_to(src).with_suffix(new_suffix)
        if target in seen:
            raise _Usage(f"{seen[target]} and {path} would both be written to {target}; rename one")
        seen[target] = path
        pairs.append((path, target))
    if not pairs:
        raise _Usage(f"{src}: no files with suffixes {', '.join(sorted(suffixes))}")
    return pairs


def _run(pairs: list[tuple[Path, Path]], work: Callable[[Path, Path], None], verb: str) -> None:
    """Apply ``work`` to each pair; report refusals per file and exit 3 at the end if any failed."""
    from gencomp.models.store import ModelFileError

    refusals = _refusal_types()
    failed = 0
    progress = Progress(
        TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=_err,
        disable=len(pairs) == 1, transient=True,
    )
    with progress:
        task = progress.add_task(verb, total=len(pairs))
        for src, dst in pairs:
            try:
                work(src, dst)
            except (*refusals, OSError) as exc:
                failed += 1
                progress.console.print(f"[bold red]error:[/] {escape(f'{src}: {exc}')}", highlight=False, soft_wrap=True)
            except (ModelFileError, ValueError) as exc:
                # settings and model are the same for every file: no point trying the rest
                _fail(f"{src}: {exc}", EXIT_USAGE)
            except Exception as exc:  # a bug, not the user's input: say so in one line, not a traceback
                _fail(f"{src}: internal error ({type(exc).__name__}: {exc})", 1)
            progress.advance(task)
    if failed:
        if len(pairs) == 1:
            raise typer.Exit(EXIT_REFUSED)
        _fail(f"{failed} of {len(pairs)} file(s) failed", EXIT_REFUSED)


def _write(path: Path, data: bytes) -> None:
    from gencomp.atomic import write_bytes_atomic

    write_bytes_atomic(path, data)


def build_settings(codec_name: str, options: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Settings for ``codec_name`` from the given CLI options (None = not given) and ``key=value`` pairs."""
    import yaml

    settings = {k: v for k, v in options.items() if v is not None}
    for pair in extra:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _Usage(f"--set {pair!r} is not key=value")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def register(app: typer.Typer) -> None:
    """Add compress, decompress, info and codecs to ``app``."""

    @app.command()
    def compress(
        src: Annotated[Path, typer.Argument(metavar="IN", help="An image, or a directory of images.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output .gcz file (or directory).")],
        codec: Annotated[str, typer.Option("--codec", "-c", help="Codec name (see `gencomp codecs`).")] = "jpeg",
        quality: Annotated[Optional[int], typer.Option(help="Quality (classical codecs).")] = None,
        target_bpp: Annotated[Optional[float], typer.Option(help="Target bits per pixel (classical codecs).")] = None,
        bits: Annotated[Optional[int], typer.Option(help="Bits per latent value (gan-inversion).")] = None,
        steps: Annotated[Optional[int], typer.Option(help="Latent search steps (gan-inversion).")] = None,
        channels: Annotated[Optional[int], typer.Option(help="Latent channels (vaegan).")] = None,
        model: Annotated[Optional[Path], typer.Option(help="Model file or zoo name (`gencomp models`).")] = None,
        device: Annotated[Optional[str], typer.Option(help="cpu (default), cuda or auto (generative codecs).")] = None,
        setting: Annotated[
            Optional[list[str]], typer.Option("--set", help="Any other codec setting, key=value (repeatable).")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace output files that already exist.")] = False,
        max_pixels: Annotated[Optional[int], typer.Option(
            help="Refuse images over this many pixels (default: the codec family's limit).", min=1)] = None,
    ) -> None:
        """Compress images to .gcz files."""
        from gencomp.codecs import get_codec
        from gencomp.data.images import open_image

        options = {"quality": quality, "target_bpp": target_bpp, "bits": bits, "steps": steps,
                   "channels": channels, "model": str(model) if model else None, "device": device}
        try:
            settings = build_settings(codec, options, setting or [])
            instance = get_codec(codec, **settings)
            if max_pixels is not None:
                instance.max_pixels = max_pixels
            pairs = _plan(src, out, IMAGE_SUFFIXES, CONTAINER_SUFFIX)
            _check_outputs(pairs, force)
        except (_Usage, ValueError, KeyError) as exc:
            _fail(exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc), EXIT_USAGE)

        def work(path: Path, target: Path) -> None:
            data = instance.encode(open_image(path))
            _write(target, data)
            if len(pairs) == 1:
                image_pixels = _pixels_of(data)
                _out.print(f"{path} -> {target}: {len(data)} bytes, {len(data) * 8 / image_pixels:.4f} bpp",
                           highlight=False)

        _run(pairs, work, "compressing")

    @app.command()
    def decompress(
        src: Annotated[Path, typer.Argument(metavar="IN", help="A .gcz file, or a directory of them.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG file (or directory).")],
        model: Annotated[Optional[Path], typer.Option(help="Model file or zoo name (`gencomp models`).")] = None,
        device: Annotated[str, typer.Option(help="cpu, cuda or auto: where a generative decoder runs.")] = "cpu",
        force: Annotated[bool, typer.Option("--force", help="Replace output files that already exist.")] = False,
        max_pixels: Annotated[Optional[int], typer.Option(
            help="Refuse files declaring more pixels than this (default: the codec family's limit).", min=1)] = None,
    ) -> None:
        """Decompress .gcz files to PNG."""
        from gencomp.codecs import decode_file
        from gencomp.codecs.base import resolve_device
        from gencomp.data.images import encode_png

        try:
            resolve_device(device)  # a wrong or absent device is a usage error before any file is read
            pairs = _plan(src, out, frozenset({CONTAINER_SUFFIX}), ".png")
            _check_outputs(pairs, force)
        except (_Usage, ValueError) as exc:
            _fail(str(exc), EXIT_USAGE)

        def work(path: Path, target: Path) -> None:  # from the path: read header first, the payload only if it passes
            image = decode_file(path, model=str(model) if model else None, device=device, max_pixels=max_pixels)
            _write(target, encode_png(image))

        _run(pairs, work, "decompressing")

    @app.command()
    def info(
        src: Annotated[Path, typer.Argument(metavar="IN", help="A .gcz file.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show the header of a .gcz file: codec, size, model fingerprint, parameters, bytes and bpp."""
        from gencomp.codecs import inspect
        from gencomp.codecs.container import ContainerError

        if not src.is_file():
            _fail(f"{src}: no such file", EXIT_USAGE)
        try:
            fields = inspect(src)  # the header and a chunked CRC: constant memory
        except OSError as exc:
            _fail(f"{src}: {exc.strerror or exc}", EXIT_USAGE)
        except ContainerError as exc:
            _fail(f"{src}: {exc}", EXIT_REFUSED)
        if as_json:
            _out.print_json(json.dumps(fields))
            return
        for key, value in fields.items():
            if key == "bpp":
                value = f"{value:.4f}"
            elif key == "params":
                value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
            _out.print(f"{key:15} {value}", highlight=False)

    @app.command("codecs")
    def list_codecs(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """List the codecs, their family and their settings with defaults."""
        from gencomp.codecs import REGISTRY

        rows = [
            {
                "name": cls.name,
                "family": cls.family,
                "codec_id": cls.codec_id,
                "params": [
                    {"name": p.name, "type": p.type, "default": p.default, "help": p.help,
                     **({"choices": list(p.choices)} if p.choices else {})}
                    for p in cls.params
                ],
            }
            for cls in sorted(REGISTRY.codecs.values(), key=lambda c: c.codec_id)
        ]
        if as_json:
            _out.print_json(json.dumps(rows))
            return
        for row in rows:
            params = ", ".join(f"{p['name']}={p['default']}" for p in row["params"]) or "-"
            _out.print(f"{row['name']:14} {row['family']:10} {params}", highlight=False)


def _pixels_of(data: bytes) -> int:
    from gencomp.codecs.container import unpack

    container = unpack(data)
    return container.width * container.height
