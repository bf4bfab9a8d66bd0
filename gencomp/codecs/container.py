"""The ``.gcz`` file format: the one place that knows how a compressed image is laid out in bytes.

Every codec's ``encode`` returns ``pack(...)`` and every ``decode`` starts with ``unpack(...)``, so a bpp
is always the length of a file that carries everything a decoder needs (which codec, which model, the image
size, the decode-relevant parameters) and that is checked end to end.

Layout, versions 1 and 2 (all integers little-endian; "varint" is unsigned LEB128, at most 10 bytes)::

    magic        4 bytes   b"\\x89GCZ"  (the high first byte catches 7-bit transfers, as PNG's does)
    version      1 byte    1, or 2 for a file a version-1 reader would misread (below)
    codec id     varint    the registry's ``codec_id`` (1 byte for ids < 128)
    fingerprint  8 bytes   first 8 bytes of the model weights' hash; zeros for classical codecs
    width        varint
    height       varint
    params len   varint    length of the params block
    params       ...       count varint, then per entry: key length u8, ASCII key, type u8, value
                           (type 0 int: zigzag varint; 1 float: float32; 2 str: varint length + UTF-8;
                           3 bytes: varint length + bytes)
    payload len  varint
    payload      ...       the codec's own bitstream
    crc32        4 bytes   zlib.crc32 of every byte before it

A JPEG of a 768x512 image (parameter q=75, payload 16 KiB..2 MiB) costs 4+1+1+8+2+2+1+6+3+4 = 32 bytes
of container.
Checks run in this order, so each failure gets the most specific error: magic (BadMagic), version
(UnsupportedVersion), the structure (Truncated / TrailingData), the CRC (CrcMismatch), then the meaning of
the fields (MalformedHeader). Codec lookup (UnknownCodec), model match (FingerprintMismatch), the decoder's
limits (LimitExceeded) and payload decoding (CorruptPayload) are raised by the codecs with these same classes.

Bounded decoding. Everything a file asks a decoder to allocate is checked against what the file can carry
before it is allocated: the header is at most ``MAX_HEADER_BYTES``; the image at most ``DEFAULT_MAX_PIXELS``
here, and each codec family has its own, usually lower, pixel limit (``Codec.max_pixels``); each codec refuses
a payload whose length cannot hold the image the header declares (``Codec.check_header``, before the payload
is read). :func:`read_container` reads a file from disk in that order: header, CRC in 1 MiB chunks, limits,
then the payload alone, so memory never holds more than the payload plus the decoded image.
"""

from __future__ import annotations

import struct
import zlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Union

from gencomp.data.images import DEFAULT_MAX_PIXELS

MAGIC = b"\x89GCZ"
# Version 2 changes no byte of the layout. It marks the files whose payload a version-1 reader would take for
# another layout and decode wrongly: GAN inversion files with per-tile colour parameters (their header key "k";
# a version-1 reader ignores the key). Such a file says version 2, so an older gencomp refuses it by name; every
# other file is still written as version 1, byte for byte what it was, and any gencomp reads it.
# Version 3 changes no byte of the layout either. It marks the VAE-GAN files whose latent is coded in two
# checkerboard passes (storage code 2, header key "a"): a gencomp without the context would refuse them only
# deep in its checks, so they say version 3 and are refused by name.
VERSION = 3  # the newest version this gencomp writes and reads
BASE_VERSION = 1  # what a file that needs nothing newer says
SUPPORTED_VERSIONS = (1, 2, 3)
FINGERPRINT_SIZE = 8
NO_FINGERPRINT = bytes(FINGERPRINT_SIZE)
CRC_SIZE = 4
_MAX_VARINT_BYTES = 10
MAX_PARAMS_BYTES = 4096  # every codec's parameters fit in a few dozen bytes
MAX_HEADER_BYTES = 64 + MAX_PARAMS_BYTES  # magic .. payload length, at most
_CHUNK = 1 << 20

ParamValue = Union[int, float, str, bytes]
_T_INT, _T_FLOAT, _T_STR, _T_BYTES = 0, 1, 2, 3


class ContainerError(ValueError):
    """Any reason a ``.gcz`` file cannot be decoded. Subclasses say which."""


class BadMagic(ContainerError):
    pass


class UnsupportedVersion(ContainerError):
    pass


class UnknownCodec(ContainerError):
    pass


class FingerprintMismatch(ContainerError):
    pass


class Truncated(ContainerError):
    pass


class TrailingData(ContainerError):
    pass


class CrcMismatch(ContainerError):
    pass


class MalformedHeader(ContainerError):
    """The structure and CRC are fine but a field makes no sense (a file written by something else)."""


class CorruptPayload(ContainerError):
    """The container is intact but the codec cannot decode its payload."""


class LimitExceeded(ContainerError):
    """The file asks the decoder for more than its limits allow (pixels, latent elements, payload bytes)."""


@dataclass(frozen=True)
class Header:
    """The fields before the payload, with sizes; what :func:`read_header` returns and codecs check."""

    codec_id: int
    width: int
    height: int
    fingerprint: bytes
    params: dict[str, ParamValue]
    version: int
    header_size: int  # bytes before the payload
    payload_size: int
    total_size: int  # the whole file, CRC included

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Container:
    codec_id: int
    width: int
    height: int
    payload: bytes
    fingerprint: bytes = NO_FINGERPRINT
    params: dict[str, ParamValue] = field(default_factory=dict)
    version: int = VERSION
    header_size: int = 0  # bytes before the payload
    total_size: int = 0  # the whole file, CRC included

    @property
    def overhead(self) -> int:
        """Container bytes that are not payload (header + CRC)."""
        return self.total_size - len(self.payload)


# -- primitive encoders --------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    if value >= 1 << 64:
        raise ValueError(f"varint {value} exceeds 64 bits")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return (value << 1) if value >= 0 else ((-value << 1) - 1)


def _unzigzag(value: int) -> int:
    return (value >> 1) if not value & 1 else -((value + 1) >> 1)


def _encode_params(params: dict[str, ParamValue]) -> bytes:
    out = bytearray(_varint(len(params)))
    for key, value in params.items():
        raw_key = key.encode("ascii")
        if not 0 < len(raw_key) < 256:
            raise ValueError(f"parameter key {key!r} must be 1..255 ASCII characters")
        out.append(len(raw_key))
        out += raw_key
        if isinstance(value, bool) or isinstance(value, int):
            if not -(1 << 62) <= int(value) < (1 << 62):
                raise ValueError(f"parameter {key}={value} is out of the 63-bit range")
            out.append(_T_INT)
            out += _varint(_zigzag(int(value)))
        elif isinstance(value, float):
            packed = struct.pack("<f", value)
            # Decoders use the unpacked value; refuse a value float32 would silently change.
            if struct.unpack("<f", packed)[0] != value:
                raise ValueError(f"parameter {key}={value!r} is not exactly representable as float32")
            out.append(_T_FLOAT)
            out += packed
        elif isinstance(value, str):
            raw = value.encode("utf-8")
            out.append(_T_STR)
            out += _varint(len(raw)) + raw
        elif isinstance(value, (bytes, bytearray)):
            out.append(_T_BYTES)
            out += _varint(len(value)) + bytes(value)
        else:
            raise TypeError(f"parameter {key} has unsupported type {type(value).__name__}")
    return bytes(out)


# -- reader ----------------------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over bytes; running out raises ``error_cls``."""

    def __init__(self, data: bytes, error_cls: type[ContainerError], what: str):
        self.data = data
        self.pos = 0
        self.error_cls = error_cls
        self.what = what

    def take(self, n: int, field_name: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error_cls(
                f"{self.what} ends inside the {field_name} field (needs {n} bytes at offset {self.pos}, "
                f"has {len(self.data) - self.pos})"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def varint(self, field_name: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.u8(field_name)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise MalformedHeader(f"the {field_name} field is a varint longer than {_MAX_VARINT_BYTES} bytes")


def _decode_params(block: bytes) -> dict[str, ParamValue]:
    reader = _Reader(block, MalformedHeader, "the params block")
    count = reader.varint("params count")
    params: dict[str, ParamValue] = {}
    for _ in range(count):
        key_raw = reader.take(reader.u8("param key length"), "param key")
        try:
            key = key_raw.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedHeader(f"param key {key_raw!r} is not ASCII") from None
        kind = reader.u8(f"type of param {key!r}")
        if kind == _T_INT:
            value: ParamValue = _unzigzag(reader.varint(f"param {key!r}"))
        elif kind == _T_FLOAT:
            value = struct.unpack("<f", reader.take(4, f"param {key!r}"))[0]
        elif kind == _T_STR:
            raw = reader.take(reader.varint(f"length of param {key!r}"), f"param {key!r}")
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedHeader(f"param {key!r} is not valid UTF-8") from None
        elif kind == _T_BYTES:
            value = reader.take(reader.varint(f"length of param {key!r}"), f"param {key!r}")
        else:
            raise MalformedHeader(f"param {key!r} has unknown type code {kind}")
        if key in params:
            raise MalformedHeader(f"param {key!r} appears twice")
        params[key] = value
    if reader.pos != len(block):
        raise MalformedHeader(f"params block has {len(block) - reader.pos} unused bytes")
    return params


# -- public API ------------------------------------------------------------------------------------------


def pack(
    *,
    codec_id: int,
    width: int,
    height: int,
    payload: bytes,
    fingerprint: bytes = NO_FINGERPRINT,
    params: dict[str, ParamValue] | None = None,
    version: int = BASE_VERSION,
) -> bytes:
    """Serialise one compressed image into the bytes of a complete ``.gcz`` file; ``version`` is the oldest
    format version whose readers decode it correctly (see ``VERSION``)."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"format version {version} is not one this gencomp writes ({SUPPORTED_VERSIONS})")
    if not 0 <= codec_id < 1 << 32:
        raise ValueError(f"codec id {codec_id} out of range")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width * height > DEFAULT_MAX_PIXELS:
        raise ValueError(f"image {width}x{height} exceeds the {DEFAULT_MAX_PIXELS}-pixel limit")
    fingerprint = bytes(fingerprint) or NO_FINGERPRINT
    if len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(fingerprint)}")
    params_block = _encode_params(dict(params or {}))
    if len(params_block) > MAX_PARAMS_BYTES:
        raise ValueError(f"parameters take {len(params_block)} bytes, more than the {MAX_PARAMS_BYTES}-byte limit")
    body = b"".join(
        [
            MAGIC,
            bytes([version]),
            _varint(codec_id),
            fingerprint,
            _varint(width),
            _varint(height),
            _varint(len(params_block)),
            params_block,
            _varint(len(payload)),
            bytes(payload),
        ]
    )
    return body + struct.pack("<I", zlib.crc32(body))


def _check_magic(head: bytes | memoryview) -> None:
    head = bytes(head[: len(MAGIC)])
    if len(head) < len(MAGIC):
        if MAGIC.startswith(head):
            raise Truncated(f"file is {len(head)} bytes, shorter than the {len(MAGIC)}-byte magic")
        raise BadMagic(f"not a .gcz file: starts with {head!r}, expected {MAGIC!r}")
    if head != MAGIC:
        raise BadMagic(f"not a .gcz file: starts with {head!r}, expected {MAGIC!r}")


def _parse_structure(head: bytes | memoryview, total_size: int) -> tuple[Header, bytes]:
    """Parse magic .. payload length from ``head`` (the file's first bytes) and check the sizes against
    ``total_size``. Returns the header (params not yet decoded) and the raw params block."""
    _check_magic(head)
    reader = _Reader(bytes(head[:MAX_HEADER_BYTES]), Truncated, "file")
    reader.take(len(MAGIC), "magic")
    version = reader.u8("version")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f".gcz format version {version} is not supported (this gencomp reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    try:
        codec_id = reader.varint("codec id")
        fingerprint = reader.take(FINGERPRINT_SIZE, "fingerprint")
        width = reader.varint("width")
        height = reader.varint("height")
        params_len = reader.varint("params length")
        if params_len > MAX_PARAMS_BYTES:
            raise MalformedHeader(f"params block of {params_len} bytes is over the {MAX_PARAMS_BYTES}-byte limit")
        params_block = reader.take(params_len, "params")
        payload_len = reader.varint("payload length")
    except Truncated:
        if total_size > len(reader.data):  # more file follows: the header itself is too long, not cut short
            raise MalformedHeader(f"header is longer than {MAX_HEADER_BYTES} bytes") from None
        raise
    header_size = reader.pos
    remaining = total_size - header_size
    if remaining < payload_len + CRC_SIZE:
        raise Truncated(
            f"file is truncated: header declares {payload_len} payload bytes + {CRC_SIZE} CRC bytes, "
            f"but only {remaining} bytes follow the header"
        )
    if remaining > payload_len + CRC_SIZE:
        raise TrailingData(f"{remaining - payload_len - CRC_SIZE} unexpected bytes after the end of the file")
    header = Header(codec_id=codec_id, width=width, height=height, fingerprint=fingerprint, params={},
                    version=version, header_size=header_size, payload_size=payload_len, total_size=total_size)
    return header, params_block


def _check_meaning(header: Header, params_block: bytes) -> Header:
    if header.width < 1 or header.height < 1 or header.width * header.height > DEFAULT_MAX_PIXELS:
        raise MalformedHeader(
            f"image size {header.width}x{header.height} is invalid or over the {DEFAULT_MAX_PIXELS}-pixel limit"
        )
    params = _decode_params(params_block)
    return dataclasses.replace(header, params=params)


def _crc_error(stored: int, actual: int) -> CrcMismatch:
    return CrcMismatch(f"CRC32 mismatch (stored {stored:08x}, computed {actual:08x}): file is corrupt")


def unpack_header(data: bytes | bytearray | memoryview) -> Header:
    """Parse and verify (CRC included) a ``.gcz`` file in memory without copying its payload."""
    view = memoryview(data).cast("B")
    header, params_block = _parse_structure(view[:MAX_HEADER_BYTES], len(view))
    (stored_crc,) = struct.unpack("<I", view[-CRC_SIZE:])
    actual_crc = zlib.crc32(view[:-CRC_SIZE])
    if stored_crc != actual_crc:
        raise _crc_error(stored_crc, actual_crc)
    return _check_meaning(header, params_block)


def _container(header: Header, payload: bytes) -> Container:
    return Container(codec_id=header.codec_id, width=header.width, height=header.height, payload=payload,
                     fingerprint=header.fingerprint, params=header.params, version=header.version,
                     header_size=header.header_size, total_size=header.total_size)


def unpack(data: bytes | bytearray | memoryview, check: Callable[[Header], None] | None = None) -> Container:
    """Parse and verify a ``.gcz`` file. Raises a :class:`ContainerError` subclass for anything wrong.

    ``check(header)`` runs after the CRC and before the payload is copied out (a codec's limits)."""
    view = memoryview(data).cast("B")
    header = unpack_header(view)
    if check is not None:
        check(header)
    payload = bytes(view[header.header_size : header.header_size + header.payload_size])
    return _container(header, payload)


def read_header(source: str | os.PathLike | BinaryIO) -> Header:
    """The verified header of a ``.gcz`` file on disk: the CRC is computed in 1 MiB chunks, so memory stays
    constant whatever the file's size."""
    with _open(source) as f:
        return _read_header(f)


def _open(source: str | os.PathLike | BinaryIO):
    if hasattr(source, "read"):
        import contextlib

        return contextlib.nullcontext(source)
    return open(source, "rb")


def _read_header(f: BinaryIO) -> Header:
    f.seek(0, os.SEEK_END)
    total = f.tell()
    f.seek(0)
    head = f.read(min(total, MAX_HEADER_BYTES))
    header, params_block = _parse_structure(head, total)
    f.seek(0)
    crc, left = 0, total - CRC_SIZE
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise Truncated("file shrank while it was read")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    (stored_crc,) = struct.unpack("<I", f.read(CRC_SIZE))
    if stored_crc != crc:
        raise _crc_error(stored_crc, crc)
    return _check_meaning(header, params_block)


def read_container(source: str | os.PathLike | BinaryIO,
                   check: Callable[[Header], None] | None = None) -> Container:
    """Read and verify a ``.gcz`` file from disk without holding more than its payload: the header first,
    the CRC in chunks, then ``check(header)`` (a codec's limits), and only then the payload."""
    with _open(source) as f:
        header = _read_header(f)
        if check is not None:
            check(header)
        f.seek(header.header_size)
        payload = f.read(header.payload_size)
        if len(payload) != header.payload_size:
            raise Truncated("file shrank while it was read")
    return _container(header, payload)


def fingerprint_bytes(hex_digest: str) -> bytes:
    """The 8 header bytes for a model whose weights hash is ``hex_digest`` (hex string, >= 16 digits)."""
    try:
        raw = bytes.fromhex(hex_digest)
    except ValueError:
        raise ValueError(f"model fingerprint {hex_digest!r} is not a hex string") from None
    if len(raw) < FINGERPRINT_SIZE:
        raise ValueError(f"model fingerprint {hex_digest!r} is shorter than {FINGERPRINT_SIZE} bytes")
    return raw[:FINGERPRINT_SIZE]
