"""Shared by the tests that take `.gcz` files apart: a file with some header fields or its payload changed."""

from __future__ import annotations

from gencomp.codecs.container import pack, unpack


def repack(data: bytes, **changes) -> bytes:
    """The same file with header fields or payload changed, and a correct CRC (to reach the checks behind it)."""
    c = unpack(data)
    fields = dict(codec_id=c.codec_id, width=c.width, height=c.height, payload=c.payload,
                  fingerprint=c.fingerprint, params=c.params, version=c.version)
    fields.update(changes)
    return pack(**fields)
