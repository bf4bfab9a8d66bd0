"""Codecs: classical (Pillow) and generative (GAN inversion, VAE-GAN), all writing ``.gcz`` files.

Importing this package registers every codec. ``decode_file`` decodes any ``.gcz`` file by the codec id in
its header; ``inspect`` reads a header for ``gencomp info``.
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from gencomp.codecs import classical, inversion, vaegan  # noqa: F401  (registers the codecs)
from gencomp.codecs.base import REGISTRY, Codec, ModelCodec, Param, get_codec, register
from gencomp.codecs.container import (
    BadMagic,
    Container,
    ContainerError,
    CorruptPayload,
    CrcMismatch,
    FingerprintMismatch,
    Header,
    LimitExceeded,
    MalformedHeader,
    TrailingData,
    Truncated,
    UnknownCodec,
    UnsupportedVersion,
    pack,
    read_container,
    read_header,
    unpack,
    unpack_header,
)


def codec_class_for(container: Container | Header) -> type[Codec]:
    try:
        return REGISTRY.by_id(container.codec_id)
    except KeyError:
        raise UnknownCodec(
            f"file was written by codec id {container.codec_id}, unknown to this gencomp "
            f"(known: {', '.join(f'{c.codec_id}={c.name}' for c in REGISTRY.codecs.values())})"
        ) from None


def decode_file(data: bytes | os.PathLike, *, model: str | os.PathLike | Any | None = None, device: str = "cpu",
                max_pixels: int | None = None) -> Image.Image:
    """Decode a complete ``.gcz`` file (its bytes, or a path) to an RGB image.

    ``model`` (a path or a loaded model) is used by generative codecs; without it they use the default
    model path (see :func:`gencomp.codecs.base.default_model_path`). ``device`` (cpu, cuda, auto) is where a
    generative decoder runs; classical codecs ignore it. ``max_pixels`` replaces the codec's pixel limit.
    A path is read header first (``read_container``): a file refused by its header or the codec's limits
    costs no more memory than its header. Raises a ContainerError subclass for anything wrong with the file,
    FingerprintMismatch when the model is not the one that encoded it, LimitExceeded over a limit.
    """
    header = read_header(data) if isinstance(data, (str, os.PathLike)) else unpack_header(data)
    cls = codec_class_for(header)
    if not issubclass(cls, ModelCodec):
        codec = cls()
    else:
        if model is None:
            model = _model_matching(cls.model_kind, header.fingerprint)
        codec = cls(model=model, device=device)
    if max_pixels is not None:
        codec.max_pixels = int(max_pixels)
    if type(codec).decode_container is Codec.decode_container:  # a codec that only decodes bytes
        return codec.decode(data if not isinstance(data, (str, os.PathLike)) else open(data, "rb").read())
    if isinstance(data, (str, os.PathLike)):
        return codec.decode_container(read_container(data, check=codec.check_header))
    return codec.decode_container(unpack(data, check=codec.check_header))


def _model_matching(kind: str, fingerprint: bytes) -> str | os.PathLike | None:
    """Without an explicit model, prefer whichever default candidate (stage output, shipped weights, then the
    other installed zoo models of the kind) encoded the file, so a file made with the shipped model still
    decodes inside a project that trained its own, and one made with a zoo model decodes without naming it."""
    from gencomp.codecs.base import default_model_path, load_model_cached, shipped_model_path
    from gencomp.codecs.container import fingerprint_bytes
    from gencomp.models import zoo

    def sidecar_matches(model) -> bool:  # no loading of every installed model: its sidecar's fingerprint first
        try:
            return (model.kind == kind and bool(model.fingerprint)
                    and fingerprint_bytes(model.fingerprint) == fingerprint)
        except ValueError:  # a malformed sidecar fingerprint: not this file's model
            return False

    in_zoo = [m.file for m in zoo.models(installed_only=True) if sidecar_matches(m)]
    for candidate in (default_model_path(kind), shipped_model_path(kind), *in_zoo):
        try:
            if fingerprint_bytes(load_model_cached(candidate).fingerprint) == fingerprint:
                return candidate
        except (OSError, ValueError):
            continue
    return None  # the codec's default: its FingerprintMismatch / missing-file error names the model to use


def inspect(data: bytes | os.PathLike) -> dict[str, Any]:
    """Header fields of a ``.gcz`` file (bytes or a path, read in chunks), checked (CRC included), plus sizes
    and bits per pixel."""
    container = read_header(data) if isinstance(data, (str, os.PathLike)) else unpack_header(data)
    try:
        codec = REGISTRY.by_id(container.codec_id).name
    except KeyError:
        codec = None
    return {
        "codec": codec,
        "codec_id": container.codec_id,
        "format_version": container.version,
        "width": container.width,
        "height": container.height,
        "fingerprint": container.fingerprint.hex(),
        "params": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in container.params.items()},
        "file_bytes": container.total_size,
        "payload_bytes": container.payload_size,
        "overhead_bytes": container.total_size - container.payload_size,
        "bpp": container.total_size * 8 / (container.width * container.height),
    }


__all__ = [
    "REGISTRY", "Codec", "ModelCodec", "Param", "get_codec", "register", "decode_file", "inspect",
    "codec_class_for", "pack", "unpack", "Container", "ContainerError", "BadMagic", "UnsupportedVersion",
    "UnknownCodec", "FingerprintMismatch", "Truncated", "TrailingData", "CrcMismatch", "MalformedHeader",
    "CorruptPayload", "LimitExceeded", "Header", "read_container", "read_header", "unpack_header",
]
