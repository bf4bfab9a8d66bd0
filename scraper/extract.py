"""Markup -> image URL candidates, page links and licence hints.

Pure functions over HTML text: no network, no Scrapy objects, so every markup case is unit-testable. URLs come
back absolute (resolved against ``<base href>`` when the page has one, else the page URL) and canonical
(:func:`canonical_url`), so one image is never fetched twice under two spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from parsel import Selector
from w3lib.url import canonicalize_url

# File extensions that mark a link target as an image. SVG is included on purpose: it is tried and then
# recorded as "not_an_image" by validation, so the manifest shows it was seen rather than silently skipped.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".jxl", ".svg"}
)

# Attributes that lazy-loading scripts read instead of src/srcset; the real image is there, src is a placeholder.
LAZY_SRC_ATTRIBUTES: tuple[str, ...] = ("data-src", "data-lazy-src", "data-original")
LAZY_SRCSET_ATTRIBUTES: tuple[str, ...] = ("data-srcset", "data-lazy-srcset")

_META_IMAGE_KEYS: tuple[str, ...] = (
    "og:image",
    "og:image:url",
    "og:image:secure_url",
    "twitter:image",
    "twitter:image:src",
)
_META_LICENSE_KEYS: tuple[str, ...] = ("license", "dc.rights", "dcterms.license", "dc.license", "copyright")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ImageCandidate:
    """One image URL found on a page. ``source`` names the markup it came from (for debugging and tests)."""

    url: str
    source: str


@dataclass(frozen=True)
class SrcsetCandidate:
    url: str  # as written in the attribute, not yet resolved
    width: int | None  # "640w"
    density: float | None  # "2x"; None when neither descriptor is given (means 1x)


def canonical_url(url: str) -> str:
    """The one spelling of a URL used for dedupe: w3lib canonical form, fragment dropped."""
    return canonicalize_url(url.strip(), keep_fragments=False)


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def looks_like_image_url(url: str) -> bool:
    """True when the URL path ends in an image file extension."""
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot != -1 and path[dot:] in IMAGE_EXTENSIONS


def parse_srcset(value: str) -> list[SrcsetCandidate]:
    """Parse a ``srcset`` attribute following the HTML spec's algorithm.

    URLs may contain commas (CDN transforms such as ``w_100,h_80``), so candidates are split on the comma that
    ends a descriptor list, not on every comma. Candidates with unparsable descriptors are skipped, as browsers do.
    """
    candidates: list[SrcsetCandidate] = []
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        if pos >= n:
            break
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        descriptors: list[str] = []
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            # Descriptors run to the next comma that is not inside parentheses.
            token, depth = [], 0
            while pos < n:
                ch = value[pos]
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth = max(0, depth - 1)
                elif ch == "," and depth == 0:
                    pos += 1
                    break
                if ch.isspace() and depth == 0:
                    if token:
                        descriptors.append("".join(token))
                        token = []
                else:
                    token.append(ch)
                pos += 1
            if token:
                descriptors.append("".join(token))
        if not url:
            continue
        candidate = _srcset_candidate(url, descriptors)
        if candidate is not None:
            candidates.append(candidate)
    return candidates


def _srcset_candidate(url: str, descriptors: list[str]) -> SrcsetCandidate | None:
    width: int | None = None
    density: float | None = None
    for d in descriptors:
        d = d.lower()
        try:
            if d.endswith("w") and width is None and density is None:
                width = int(d[:-1])
                if width <= 0:
                    return None
            elif d.endswith("x") and width is None and density is None:
                density = float(d[:-1])
                if density <= 0:
                    return None
            elif d.endswith("h"):
                int(d[:-1])  # future-compat height descriptor: allowed, ignored
            else:
                return None
        except ValueError:
            return None
    return SrcsetCandidate(url, width, density)


def largest_srcset_candidate(candidates: list[SrcsetCandidate]) -> SrcsetCandidate | None:
    """The candidate a browser would pick on the largest screen: the widest ``w``, else the highest ``x``.

    When both kinds are present the ``w`` candidates win: their widths are real pixel counts, densities are not.
    Ties keep the first candidate in document order.
    """
    if not candidates:
        return None
    with_width = [c for c in candidates if c.width is not None]
    if with_width:
        return max(with_width, key=lambda c: c.width)  # max keeps the first of equal keys
    return max(candidates, key=lambda c: c.density if c.density is not None else 1.0)


def document_base(selector: Selector, page_url: str) -> str:
    """The URL relative references resolve against: ``<base href>`` (itself resolved) or the page URL."""
    base = selector.xpath("//base[@href][1]/@href").get()
    if base and base.strip():
        return urljoin(page_url, base.strip())
    return page_url


def _resolve(base: str, ref: str | None) -> str | None:
    if ref is None:
        return None
    ref = ref.strip()
    if not ref or ref.startswith(("data:", "javascript:", "mailto:", "blob:", "#")):
        return None
    url = urljoin(base, ref)  # handles relative, root-relative and protocol-relative ("//host/x.jpg")
    if not is_http_url(url):
        return None
    return canonical_url(url)


def _first_attr(element: Selector, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = element.attrib.get(name)
        if value and value.strip():
            return value
    return None


def _best_from_img(img: Selector) -> tuple[str | None, str]:
    """The best reference of an ``<img>``: lazy srcset > srcset > lazy src > src (as written, unresolved)."""
    srcset = _first_attr(img, LAZY_SRCSET_ATTRIBUTES)
    source = "lazy_srcset"
    if srcset is None:
        srcset, source = img.attrib.get("srcset"), "srcset"
    lazy_src = _first_attr(img, LAZY_SRC_ATTRIBUTES)
    src = lazy_src or img.attrib.get("src")
    if srcset:
        candidates = parse_srcset(srcset)
        # src is the implicit 1x candidate of a density-only srcset (HTML spec), but carries no width.
        if src and candidates and all(c.width is None for c in candidates):
            candidates.append(SrcsetCandidate(src, None, 1.0))
        best = largest_srcset_candidate(candidates)
        if best is not None:
            return best.url, source
    if lazy_src:
        return lazy_src, "lazy_src"
    return img.attrib.get("src"), "img_src"


def _best_from_picture(picture: Selector) -> tuple[str | None, str]:
    """One image per ``<picture>``: the widest candidate over all ``<source srcset>`` and the inner ``<img>``."""
    candidates: list[SrcsetCandidate] = []
    for source in picture.xpath("./source"):
        srcset = _first_attr(source, LAZY_SRCSET_ATTRIBUTES) or source.attrib.get("srcset")
        if srcset:
            candidates.extend(parse_srcset(srcset))
    img = picture.xpath(".//img[1]")
    img_ref, _ = _best_from_img(img[0]) if img else (None, "")
    with_width = [c for c in candidates if c.width is not None]
    if with_width:
        best = largest_srcset_candidate(with_width)
        return (best.url if best else None), "picture_source"
    if img_ref:
        return img_ref, "picture_img"
    best = largest_srcset_candidate(candidates)
    return (best.url if best else None), "picture_source"


def extract_images(html: str, page_url: str) -> list[ImageCandidate]:
    """All image URLs on a page, absolute, canonical and deduplicated, in document order.

    Rules: an ``<img>`` (or ``<picture>``) wrapped in ``<a href>`` to an image file yields only the link target,
    because the link is the full-size file and the inline image its thumbnail. Otherwise an ``<img>`` yields its
    largest srcset candidate (``w`` or ``x`` descriptors, lazy ``data-srcset`` first), else its lazy ``data-src``
    / ``data-lazy-src`` / ``data-original``, else ``src``. Also collected: ``<a href>`` to image files,
    ``og:image`` / ``twitter:image`` meta tags and ``url(...)`` in inline ``style`` attributes.
    """
    selector = Selector(text=html or "<html></html>")
    base = document_base(selector, page_url)
    found: list[ImageCandidate] = []
    seen: set[str] = set()

    def add(ref: str | None, source: str) -> None:
        url = _resolve(base, ref)
        if url is not None and url not in seen:
            seen.add(url)
            found.append(ImageCandidate(url, source))

    for meta in selector.xpath("//meta"):
        key = (meta.attrib.get("property") or meta.attrib.get("name") or "").strip().lower()
        if key in _META_IMAGE_KEYS:
            add(meta.attrib.get("content"), key.split(":")[0] + "_image")

    # Document order over the elements that can carry images.
    for element in selector.xpath("//img | //picture | //a[@href] | //*[@style]"):
        tag = element.root.tag.lower() if isinstance(element.root.tag, str) else ""
        if tag == "a":
            href = element.attrib.get("href")
            target = _resolve(base, href)
            if target is not None and looks_like_image_url(target):
                add(href, "link")
        elif tag == "picture":
            if not _inside_image_link(element, base):
                ref, source = _best_from_picture(element)
                add(ref, source)
        elif tag == "img":
            if element.xpath("ancestor::picture"):
                pass  # handled with its <picture>
            elif not _inside_image_link(element, base):
                ref, source = _best_from_img(element)
                add(ref, source)
        style = element.attrib.get("style")
        if style:
            for match in _CSS_URL.finditer(style):
                add(match.group(2), "css_background")
    return found


def _inside_image_link(element: Selector, base: str) -> bool:
    href = element.xpath("ancestor::a[@href][1]/@href").get()
    target = _resolve(base, href)
    return target is not None and looks_like_image_url(target)


def extract_links(html: str, page_url: str) -> list[str]:
    """Page links to follow: ``<a href>`` that are http(s) and not image files; absolute, canonical, unique."""
    selector = Selector(text=html or "<html></html>")
    base = document_base(selector, page_url)
    links: list[str] = []
    seen: set[str] = set()
    for href in selector.xpath("//a/@href | //area/@href").getall():
        url = _resolve(base, href)
        if url is None or looks_like_image_url(url) or url in seen:
            continue
        seen.add(url)
        links.append(url)
    return links


def license_hint(html: str, page_url: str) -> str:
    """A licence hint for the page's images: ``rel=license`` link target, else a licence/rights meta tag, else ""."""
    selector = Selector(text=html or "<html></html>")
    base = document_base(selector, page_url)
    for element in selector.xpath("//link[@href] | //a[@href]"):
        rels = (element.attrib.get("rel") or "").lower().split()
        if "license" in rels:
            href = (element.attrib.get("href") or "").strip()
            return urljoin(base, href) if href else ""
    for meta in selector.xpath("//meta[@content]"):
        key = (meta.attrib.get("name") or meta.attrib.get("property") or "").strip().lower()
        if key in _META_LICENSE_KEYS:
            return meta.attrib["content"].strip()
    return ""
