"""Feed discovery: the feed links an HTML page advertises. Pure, no I/O.

A site's home page names its feeds with
``<link rel="alternate" type="application/rss+xml" href="/feed">``; users often
configure the page rather than the feed, so the fetch stage follows the first link.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/feed+json"})
MAX_SCAN = 256 * 1024  # feed links sit in <head>; a huge page is not read to its end
MAX_LINKS = 20
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
SNIFF_BYTES = 2048


class _Done(Exception):
    """Raised inside the parser to stop scanning early."""


class _LinkFinder(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base":
            href = _attr(attrs, "href")
            if href:
                self.base_url = urljoin(self.base_url, href)
        elif tag == "link":
            self._link(attrs)
        elif tag == "body":
            raise _Done  # <link> belongs in <head>; the body is not worth parsing

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def _link(self, attrs: list[tuple[str, str | None]]) -> None:
        rel = (_attr(attrs, "rel") or "").lower().split()
        kind = (_attr(attrs, "type") or "").split(";")[0].strip().lower()
        href = (_attr(attrs, "href") or "").strip()
        if "alternate" not in rel or kind not in FEED_TYPES or not href:
            return
        url = urljoin(self.base_url, href)
        if urlsplit(url).scheme in ("http", "https") and url not in self.links:
            self.links.append(url)
            if len(self.links) >= MAX_LINKS:
                raise _Done


def _attr(attrs: list[tuple[str, str | None]], name: str) -> str | None:
    for key, value in attrs:
        if key == name:
            return value
    return None


def find_feed_links(html: bytes | str, base_url: str) -> list[str]:
    """Return the absolute URLs of the feeds ``html`` advertises, in document order.

    Only ``<link rel="alternate">`` with an RSS, Atom or JSON Feed type counts;
    ``href`` is resolved against ``<base href>`` when present, else ``base_url``.
    Work is bounded: scanning stops at ``<body>`` or after 256 KiB, and at most 20
    links are returned. Never raises on malformed HTML.
    """
    text = html[:MAX_SCAN]
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    finder = _LinkFinder(base_url)
    try:
        finder.feed(text)
        finder.close()
    except _Done:
        pass
    except AssertionError:
        # html.parser (before Python 3.13) asserts on some malformed "<![...]" sections;
        # the links found before that point still stand.
        pass
    return finder.links


def looks_like_html(content_type: str | None, body: bytes) -> bool:
    """True for an HTML page; false for a feed, even one mislabelled ``text/html``.

    The body decides when it can (feeds are often served as text/html); the
    content type decides otherwise.
    """
    head = body[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return True
    if head.startswith((b"<?xml", b"<rss", b"<feed", b"<rdf", b"{")):
        return False
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in HTML_TYPES
