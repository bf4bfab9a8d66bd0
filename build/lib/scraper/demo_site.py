"""An offline demo website built from the photographs shipped inside installed packages, and a server for it.

:func:`build_site` writes a static site whose markup exercises what the spider must handle (srcset with
thumbnails and the full image, links to full-size files, ``<picture>``, lazy ``data-src``, CSS backgrounds,
og:image, a robots.txt-disallowed folder) and whose files exercise validation and dedupe (50 % resized and
JPEG q40 re-encoded copies, a truncated JPEG, HTML served as .jpg, a zero-byte PNG). Non-overlapping quadrant
crops of the larger photos and, optionally, photos from ``extra_photo_dirs`` give training more material.
The site is deterministic given its inputs. :func:`serve` serves it on the loopback interface.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import importlib.util
import io
import os
import random
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from gencomp.data.images import open_image
from scraper.validate import write_atomic

# (package, path inside the package) of real photographs; scikit-image's synthetic/texture/text images are left out.
PACKAGE_PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/coins.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "sample_data/grace_hopper.jpg"),
)
EXTRA_PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
PHOTOS_PER_PAGE = 12
CROP_MIN_SIDE = 400  # photos at least this large on both sides are also published as four quadrant crops
THUMBNAIL_WIDTHS = (320, 640)
PRIVATE_IMAGE = "private/secret.jpg"

# Files that must be recorded as failures, with the manifest status the crawl must give them.
BROKEN_FILES: dict[str, str] = {
    "broken/truncated.jpg": "truncated",
    "broken/not-really.jpg": "not_an_image",
    "broken/empty.png": "not_an_image",
}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".jxl": "image/jxl",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".svg": "image/svg+xml",
    ".css": "text/css",
    "": "application/octet-stream",
}
_LAZY_PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


@dataclass(frozen=True)
class SiteInfo:
    """What :func:`build_site` published. Paths are relative to ``root`` with forward slashes."""

    root: Path
    pages: tuple[str, ...]
    expected_ok: tuple[str, ...]  # every valid image a crawl must store (distinct files)
    originals: tuple[str, ...]  # package photos, copied as-is
    crops: tuple[str, ...]
    variants: tuple[str, ...]  # resized / re-encoded copies (near-duplicates of originals)
    extras: tuple[str, ...]  # from extra_photo_dirs, copied or hard-linked as-is
    thumbnails: tuple[str, ...]  # srcset fallbacks; a crawl picks the full size instead
    broken: dict[str, str] = field(default_factory=dict)  # path -> manifest status a crawl must record
    private: tuple[str, ...] = ()  # disallowed by robots.txt: must never be fetched
    sources: tuple[str, ...] = ()  # absolute paths of the package photos used


def _package_dir(name: str) -> Path | None:
    """Install folder of a package, located without importing it (importing scikit-learn takes seconds)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent  # the folder of the package's __init__.py, i.e. of its __file__


def package_photo_paths() -> list[Path]:
    """The package photographs that exist in this environment (found via the packages' install folders)."""
    import matplotlib

    roots = {
        "skimage": _package_dir("skimage"),
        "sklearn": _package_dir("sklearn"),
        "matplotlib": Path(matplotlib.get_data_path()),
    }
    return [roots[pkg] / rel for pkg, rel in PACKAGE_PHOTOS if roots[pkg] is not None and (roots[pkg] / rel).is_file()]


def find_extra_photos(dirs: Iterable[str | Path], *, limit: int | None, seed: int) -> list[Path]:
    """Photos under ``dirs`` (recursively), a seeded random choice of at most ``limit``, in a stable order."""
    found: list[Path] = []
    for directory in dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"extra photo folder {directory} does not exist")
        found.extend(
            p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in EXTRA_PHOTO_SUFFIXES
        )
    found = sorted(set(found))
    if limit is not None and len(found) > limit:
        chosen = random.Random(seed).sample(range(len(found)), limit)
        found = [found[i] for i in sorted(chosen)]
    return found


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _resize_to_width(img: Image.Image, width: int) -> Image.Image:
    height = max(1, round(img.height * width / img.width))
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _link_or_copy(source: Path, target: Path) -> None:
    """Publish a file as-is: hard link when possible (no extra disk), else copy; atomic either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


@dataclass
class _Entry:
    """One gallery item: the file the crawl should fetch and how it is marked up."""

    path: str
    width: int = 0
    thumbs: tuple[tuple[str, int], ...] = ()  # (path, width)
    caption: str = ""


def _entry_markup(entry: _Entry, style: int) -> str:
    """Markup for one item; ``style`` cycles through the cases the spider must understand."""
    url = "/" + entry.path
    alt = html.escape(entry.caption or Path(entry.path).stem, quote=True)
    if entry.thumbs:
        srcset = ", ".join(f"/{p} {w}w" for p, w in entry.thumbs) + f", {url} {entry.width}w"
        small = "/" + entry.thumbs[0][0]
        if style % 3 == 0:  # thumbnail linked to the full-size file
            return (f'<a href="{url}"><img src="{small}" srcset="{srcset}" sizes="(max-width: 600px) 100vw, 33vw"'
                    f' alt="{alt}"></a>')
        if style % 3 == 1:  # responsive <picture>; the widest candidate is the full image
            return f'<picture><source srcset="{srcset}"><img src="{small}" alt="{alt}"></picture>'
        return f'<img src="{small}" srcset="{srcset}" alt="{alt}">'  # srcset alone
    kind = style % 4
    if kind == 0:
        return f'<img src="{url}" alt="{alt}" loading="lazy">'
    if kind == 1:
        return f'<img src="{_LAZY_PLACEHOLDER}" data-src="{url}" class="lazy" alt="{alt}">'
    if kind == 2:
        return f'<div class="photo" role="img" aria-label="{alt}" style="background-image: url(\'{url}\')"></div>'
    return f'<a href="{url}">{alt}</a>'


def _page_html(title: str, body: str, *, head_extra: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        '<link rel="license" href="https://creativecommons.org/publicdomain/zero/1.0/">'
        f"{head_extra}</head>\n<body>\n{body}\n</body></html>\n"
    )


def build_site(
    out_dir: str | Path,
    *,
    extra_photo_dirs: Iterable[str | Path] = (),
    max_extra_photos: int | None = None,
    seed: int = 0,
) -> SiteInfo:
    """Write the demo site into ``out_dir`` (created if needed) and describe what it holds."""
    if max_extra_photos is not None and max_extra_photos < 0:
        raise ValueError(f"max_extra_photos must be >= 0, got {max_extra_photos}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    sources = package_photo_paths()
    if not sources:
        raise FileNotFoundError("none of the package photographs were found (scikit-image, scikit-learn, matplotlib)")

    entries: list[_Entry] = []
    originals, crops, variants, thumbnails = [], [], [], []
    for index, source in enumerate(sources):
        stem = source.stem
        rel = f"photos/full/{source.name}"
        _link_or_copy(source, root / rel)
        originals.append(rel)
        img = open_image(source)
        thumbs = []
        for width in THUMBNAIL_WIDTHS:
            if width < img.width:
                thumb_rel = f"photos/thumbs/{stem}-{width}.jpg"
                write_atomic(root / thumb_rel, _jpeg_bytes(_resize_to_width(img, width), 85))
                thumbs.append((thumb_rel, width))
                thumbnails.append(thumb_rel)
        entries.append(_Entry(rel, img.width, tuple(thumbs), stem))
        if img.width >= CROP_MIN_SIDE and img.height >= CROP_MIN_SIDE:
            half_w, half_h = img.width // 2, img.height // 2
            for q, (x, y) in enumerate(((0, 0), (half_w, 0), (0, half_h), (half_w, half_h))):
                crop_rel = f"photos/crops/{stem}-q{q}.png"
                write_atomic(root / crop_rel, _png_bytes(img.crop((x, y, x + half_w, y + half_h))))
                crops.append(crop_rel)
                entries.append(_Entry(crop_rel, half_w, (), f"{stem} quadrant {q}"))
        if index % 2 == 0:  # every other photo gets near-duplicate copies, so dedupe has work
            half_rel = f"photos/variants/{stem}-half.jpg"
            write_atomic(root / half_rel, _jpeg_bytes(_resize_to_width(img, max(1, img.width // 2)), 90))
            q40_rel = f"photos/variants/{stem}-q40.jpg"
            write_atomic(root / q40_rel, _jpeg_bytes(img, 40))
            variants += [half_rel, q40_rel]
            entries += [_Entry(half_rel, 0, (), f"{stem} (small)"), _Entry(q40_rel, 0, (), f"{stem} (q40)")]

    extras = []
    for number, source in enumerate(find_extra_photos(extra_photo_dirs, limit=max_extra_photos, seed=seed)):
        safe_stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in source.stem)[:60]
        rel = f"extra/{number:05d}-{safe_stem}{source.suffix.lower()}"
        _link_or_copy(source, root / rel)
        extras.append(rel)
        entries.append(_Entry(rel, 0, (), source.stem))

    # Broken files: each must become a failure row, never a stored image.
    truncate_source = next((s for s in sources if s.suffix.lower() == ".jpg"), sources[0])
    data = truncate_source.read_bytes()
    write_atomic(root / "broken/truncated.jpg", data[: len(data) * 6 // 10])
    write_atomic(root / "broken/not-really.jpg", _page_html("Not an image", "<p>This is HTML.</p>").encode())
    write_atomic(root / "broken/empty.png", b"")
    entries += [_Entry(path) for path in BROKEN_FILES]
    secret = open_image(sources[0])
    write_atomic(root / PRIVATE_IMAGE, _jpeg_bytes(_resize_to_width(secret, min(256, secret.width)), 85))
    write_atomic(root / "robots.txt", b"User-agent: *\nDisallow: /private/\n")

    random.Random(seed).shuffle(entries)
    # The disallowed image sits on the first page, so every crawl meets it (and must not fetch it).
    entries.insert(0, _Entry(PRIVATE_IMAGE, 0, (), "private"))
    pages = []
    page_count = max(1, -(-len(entries) // PHOTOS_PER_PAGE))
    for page in range(page_count):
        chunk = entries[page * PHOTOS_PER_PAGE : (page + 1) * PHOTOS_PER_PAGE]
        items = "\n".join(
            f"<figure>{_entry_markup(e, page * PHOTOS_PER_PAGE + i)}<figcaption>{html.escape(e.caption)}"
            "</figcaption></figure>"
            for i, e in enumerate(chunk)
        )
        nav = []
        if page > 0:
            nav.append(f'<a rel="prev" href="page-{page:03d}.html">previous</a>')
        if page + 1 < page_count:
            nav.append(f'<a rel="next" href="page-{page + 2:03d}.html">next</a>')
        nav.append('<a href="../index.html">index</a>')
        rel = f"gallery/page-{page + 1:03d}.html"
        body = f"<h1>Gallery page {page + 1}</h1>\n{items}\n<nav>{' '.join(nav)}</nav>"
        write_atomic(root / rel, _page_html(f"Gallery {page + 1}", body).encode())
        pages.append(rel)
    index_links = "\n".join(f'<li><a href="{p}">Gallery page {i + 1}</a></li>' for i, p in enumerate(pages))
    og = f'<meta property="og:image" content="/{originals[0]}">'
    index_body = f"<h1>gencomp demo photos</h1>\n<ul>\n{index_links}\n</ul>"
    write_atomic(root / "index.html", _page_html("gencomp demo photos", index_body, head_extra=og).encode())
    pages.insert(0, "index.html")

    return SiteInfo(
        root=root,
        pages=tuple(pages),
        expected_ok=tuple(originals + crops + variants + extras),
        originals=tuple(originals),
        crops=tuple(crops),
        variants=tuple(variants),
        extras=tuple(extras),
        thumbnails=tuple(thumbnails),
        broken=dict(BROKEN_FILES),
        private=(PRIVATE_IMAGE,),
        sources=tuple(str(s) for s in sources),
    )


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files with a Content-Type per extension and content-based ETags (for conditional rescrapes).

    ETags hash the content, so a site rebuilt into a new folder still answers If-None-Match with 304;
    If-Modified-Since is handled by the base class when no If-None-Match is sent.
    """

    extensions_map = CONTENT_TYPES
    _etag_cache: dict[tuple[str, int, int], str] = {}
    _etag_lock = threading.Lock()

    def log_message(self, format, *args):  # noqa: A002 - quiet: the crawler logs what matters
        pass

    def guess_type(self, path):
        return CONTENT_TYPES.get(Path(str(path)).suffix.lower(), CONTENT_TYPES[""])

    def _etag_for(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path):
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        with self._etag_lock:
            cached = self._etag_cache.get(key)
        if cached is None:
            with open(path, "rb") as fh:
                cached = '"' + hashlib.sha256(fh.read()).hexdigest()[:32] + '"'
            with self._etag_lock:
                self._etag_cache[key] = cached
        return cached

    def send_head(self):
        self._etag = self._etag_for(self.translate_path(self.path))
        if self._etag is not None:
            wanted = [t.strip() for t in self.headers.get("If-None-Match", "").split(",") if t.strip()]
            if self._etag in wanted or "*" in wanted:
                self.send_response(304)
                self.end_headers()
                return None
        return super().send_head()

    def end_headers(self):
        etag = getattr(self, "_etag", None)
        if etag is not None:
            self.send_header("ETag", etag)
        super().end_headers()


@contextlib.contextmanager
def serve(site_dir: str | Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``site_dir`` over HTTP in a background thread; yields the base URL (no trailing slash)."""
    site_dir = Path(site_dir)
    if not site_dir.is_dir():
        raise FileNotFoundError(f"site folder {site_dir} does not exist")
    handler = functools.partial(_SiteHandler, directory=str(site_dir))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"demo-site-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
