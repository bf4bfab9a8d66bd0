"""A loopback test website for the crawler: one page per markup case and one URL per failure case.

:class:`LoopbackSite` serves a dict of routes from ``http.server`` in a background thread and logs every
request, so tests can assert both what the crawler recorded and what it did (or never did) request.
Images are generated here (tiny, distinct), never read from ../shared/data.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def _array(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth, seed-specific RGB picture (distinct bytes per seed, compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.01, 0.08, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(127.5 + 120 * np.sin(fx * x + fy * y + phase))
    arr = np.stack(channels, axis=-1) + rng.normal(0, 4, (height, width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def jpeg(seed: int, width: int = 64, height: int = 48, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_array(seed, width, height)).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def png(seed: int, width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_array(seed, width, height)).save(buf, format="PNG")
    return buf.getvalue()


def cmyk_jpeg(seed: int, width: int = 40, height: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_array(seed, width, height)).convert("CMYK").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png16(seed: int, width: int = 40, height: int = 30) -> bytes:
    grey = _array(seed, width, height)[..., 0].astype(np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")  # uint16 array -> mode I;16
    return buf.getvalue()


def exif_rotated_jpeg(seed: int, width: int = 60, height: int = 20) -> bytes:
    """Stored ``width`` x ``height`` with EXIF orientation 6 (rotate 90 deg), so displayed height x width."""
    img = Image.fromarray(_array(seed, width, height))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def animated_gif(seed: int, width: int = 32, height: int = 24, frames: int = 3) -> bytes:
    images = [Image.fromarray(_array(seed + i, width, height)).convert("P") for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'


@dataclass
class Route:
    """What the server answers for one path. ``handler`` (if set) decides per request instead."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    send_length: bool = True  # False: no Content-Length, body streamed until the connection closes
    handler: Callable[[int], Route] | None = None  # called with the 1-based count of requests to this path


@dataclass(frozen=True)
class LoggedRequest:
    path: str
    headers: dict[str, str]
    at: float  # time.monotonic()


class LoopbackSite:
    """Serve ``routes`` (path -> Route) on ``host``; unknown paths answer 404. Logs every request."""

    def __init__(self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1"):
        self.routes: dict[str, Route] = dict(routes or {})
        self.host = host
        self.requests: list[LoggedRequest] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self):
                path = self.path.split("#", 1)[0]
                with site._lock:
                    site.requests.append(LoggedRequest(path, dict(self.headers.items()), time.monotonic()))
                    site._counts[path] = count = site._counts.get(path, 0) + 1
                route = site.routes.get(path)
                if route is not None and route.handler is not None:
                    route = route.handler(count)
                if route is None:
                    route = Route(b"<html><body>not found</body></html>", status=404)
                if route.delay_s:
                    time.sleep(route.delay_s)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    if route.send_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    else:
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeouts, byte caps): expected in these tests

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    @property
    def port(self) -> int:
        return self._server.server_port

    def requested(self, path: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> LoopbackSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackSite:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def page(body: str, *, head: str = "", title: str = "test page") -> Route:
    html = f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    return Route(html.encode("utf-8"))


def image(body: bytes, content_type: str = "image/jpeg", **kwargs) -> Route:
    return Route(body, content_type=content_type, **kwargs)
