"""JSON (de)serialisation of the scrapy-redis request queue: ``SCHEDULER_SERIALIZER = "scraper.redis_serializer"``.

scrapy-redis stores each queued request as ``serializer.dumps(request.to_dict(spider=spider))`` and rebuilds it
with ``request_from_dict(serializer.loads(data), spider=spider)``; its default serializer is pickle, so anyone
who can write to the Redis database could run code in every crawl process. JSON carries data only. Values JSON
has no type for are tagged: ``{"__bytes__": "<base64>"}`` for bytes (the body, header names and values) and
``{"__tuple__": [...]}`` for tuples; a dict that happens to use a tag name as its only key is wrapped in
``{"__dict__": {...}}``, so every value round-trips exactly.

:func:`loads` accepts only a JSON object shaped like a request dict: anything else (a pickle, a truncated
payload, a callback that is not one of the spider's queue callbacks) raises :class:`QueuePayloadError`. Requests
that decode still pass the crawl's origin and address checks before anything is fetched.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# The spider methods a queued request may name (scraper.spiders.images.ImagesSpider); a payload naming any other
# method would make the crawl call it with a response.
QUEUE_CALLBACKS = frozenset({"parse_page", "parse_image"})
QUEUE_ERRBACKS = frozenset({"on_page_error", "on_image_error"})
_TAGS = ("__bytes__", "__tuple__", "__dict__")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class QueuePayloadError(ValueError):
    """A queue entry that is not a JSON request dict written by this serializer; it is refused, never executed."""


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if isinstance(key, (bytes, bytearray)):
                # Scrapy's header dicts have bytes keys; JSON keys are strings, so such a dict becomes pairs.
                return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
            if not isinstance(key, str):
                raise TypeError(f"cannot queue a dict key of type {type(key).__name__}: {key!r}")
            encoded[key] = _encode(item)
        if len(encoded) == 1 and next(iter(encoded)) in _TAGS:
            return {"__dict__": [[k, v] for k, v in encoded.items()]}
        return encoded
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"cannot queue a value of type {type(value).__name__} as JSON: {value!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "__bytes__":
                if not isinstance(inner, str):
                    raise QueuePayloadError("__bytes__ must hold a base64 string")
                return base64.b64decode(inner, validate=True)
            if tag == "__tuple__":
                return tuple(_decode(v) for v in inner)
            if tag == "__dict__":
                return {_decode(k): _decode(v) for k, v in inner}
        return {k: _decode(v) for k, v in value.items()}
    return value


def dumps(obj: dict) -> bytes:
    """The request dict as UTF-8 JSON bytes (raises TypeError for a value JSON cannot carry)."""
    return json.dumps(_encode(obj), separators=(",", ":"), allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> dict:
    """The request dict back; raises :class:`QueuePayloadError` for anything this module did not write."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        raw = json.loads(text)
        obj = _decode(raw)
    except QueuePayloadError:
        raise
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise QueuePayloadError(f"refused a queue entry that is not this crawl's JSON: {exc}") from None
    _check_request_dict(obj)
    return obj


def _check_request_dict(obj: Any) -> None:
    if not isinstance(obj, dict):
        raise QueuePayloadError(f"refused a queue entry that is not a request dict ({type(obj).__name__})")
    if not isinstance(obj.get("url"), str):
        raise QueuePayloadError("refused a queue entry without a string url")
    if obj.get("method", "GET") not in _METHODS:
        raise QueuePayloadError(f"refused a queue entry with method {obj.get('method')!r}")
    if obj.get("callback") not in QUEUE_CALLBACKS | {None}:
        raise QueuePayloadError(f"refused a queue entry with callback {obj.get('callback')!r}")
    if obj.get("errback") not in QUEUE_ERRBACKS | {None}:
        raise QueuePayloadError(f"refused a queue entry with errback {obj.get('errback')!r}")
    if "_class" in obj and obj["_class"] not in ("scrapy.http.request.Request", "scrapy.Request"):
        raise QueuePayloadError(f"refused a queue entry of class {obj['_class']!r}")
