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
    MalformedHeader,
    TrailingData,
    Truncated,
    UnknownCodec,
    UnsupportedVersion,
    pack,
    unpack,
)


def codec_class_for(container: Container) -> type[Codec]:
    try:
        return REGISTRY.by_id(container.codec_id)
    except KeyError:
        raise UnknownCodec(
            f"file was written by codec id {container.codec_id}, unknown to this gencomp "
            f"(known: {', '.join(f'{c.codec_id}={c.name}' for c in REGISTRY.codecs.values())})"
        ) from None


def decode_file(data: bytes, *, model: str | os.PathLike | Any | None = None, device: str = "cpu") -> Image.Image:
    """Decode a complete ``.gcz`` file to an RGB image.

    ``model`` (a path or a loaded model) is used by generative codecs; without it they use the default
    model path (see :func:`gencomp.codecs.base.default_model_path`). ``device`` (cpu, cuda, auto) is where a
    generative decoder runs; classical codecs ignore it. Raises a ContainerError subclass for anything wrong
    with the file, FingerprintMismatch when the model is not the one that encoded it.
    """
    container = unpack(data)
    cls = codec_class_for(container)
    if not issubclass(cls, ModelCodec):
        return cls().decode(data)
    if model is None:
        model = _model_matching(cls.model_kind, container.fingerprint)
    return cls(model=model, device=device).decode(data)


def _model_matching(kind: str, fingerprint: bytes) -> str | os.PathLike | None:
    """Without an explicit model, prefer whichever default candidate (stage output, shipped weights) encoded
    the file, so a file made with the shipped model still decodes inside a project that trained its own."""
    from gencomp.codecs.base import default_model_path, load_model_cached, shipped_model_path
    from gencomp.codecs.container import fingerprint_bytes

    for candidate in (default_model_path(kind), shipped_model_path(kind)):
        try:
            if fingerprint_bytes(load_model_cached(candidate).fingerprint) == fingerprint:
                return candidate
        except (OSError, ValueError):
            continue
    return None  # the codec's default: its FingerprintMismatch / missing-file error names the model to use


def inspect(data: bytes) -> dict[str, Any]:
    """Header fields of a ``.gcz`` file, checked (CRC included), plus sizes and bits per pixel."""
    container = unpack(data)
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
        "payload_bytes": len(container.payload),
        "overhead_bytes": container.overhead,
        "bpp": container.total_size * 8 / (container.width * container.height),
    }


__all__ = [
    "REGISTRY", "Codec", "ModelCodec", "Param", "get_codec", "register", "decode_file", "inspect",
    "codec_class_for", "pack", "unpack", "Container", "ContainerError", "BadMagic", "UnsupportedVersion",
    "UnknownCodec", "FingerprintMismatch", "Truncated", "TrailingData", "CrcMismatch", "MalformedHeader",
    "CorruptPayload",
]
