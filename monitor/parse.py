"""Parse stage: the bytes of one HTTP response -> ParsedFeed.

feedparser reads RSS 0.9x/1.0/2.0, RDF and Atom from the response *bytes* (never a
URL: given bytes that happen to name a file, ``feedparser.parse`` would open it, so the
body goes in wrapped in a BytesIO), with the response headers so that the charset and
the base URL for relative links are the server's. JSON Feed goes to ``monitor.jsonfeed``.

What this stage adds around feedparser, all cheap:

* refusals with a precise reason (``ParseError``): empty body, HTML page, binary data,
  JSON that is not a JSON Feed, an XML document that is not a feed;
* leading whitespace before ``<?xml`` is dropped (common, and it otherwise sends the
  whole document to feedparser's slow loose parser with its declared charset ignored);
* a gzip body that the server forgot to label is inflated (bounded);
* a refusal of documents whose internal entities would expand past a budget: expat
  guards itself against "billion laughs", but feedparser's fallback parser expands
  plain internal entities without a limit. External entities are never resolved
  (feedparser drops their declarations before expat sees them);
* ``bozo_reason`` as a short sentence ("not well-formed (invalid token) at line 5,
  column 3"), ``ttl_seconds`` from ``<ttl>`` or ``sy:updatePeriod``/``sy:updateFrequency``,
  dates as aware UTC datetimes (a date without a zone is UTC).

Text fields are HTML: feedparser's HTML values are kept raw (unsanitised: the
normalise stage reduces them to plain text, nothing renders them), plain-text values
are HTML-escaped, so every title/summary/content reads the same way downstream.
"""

from __future__ import annotations

import io
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from html import escape
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

from monitor.errors import ParseError
from monitor.jsonfeed import is_json_document, parse_json_feed, parse_timestamp
from monitor.model import ParsedEntry, ParsedFeed

_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
MAX_INFLATED_BYTES = 32 * 1024 * 1024  # when the caller gives no max_bytes
MAX_ENTITY_EXPANSION = 1024 * 1024  # bytes that internal entity references may add
MAX_PROLOG_WORK = 20_000_000  # DTD declarations x prolog bytes (feedparser rescans per one)

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_HTML_ROOTS = frozenset({b"html", b"head", b"body"})
_UPDATE_PERIODS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
    "monthly": 30 * 86400.0,
    "yearly": 365 * 86400.0,
}
# bytes that never occur in text (NUL and C0 controls other than tab, newline, CR)
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32)])
_COMMENT = re.compile(rb"<!--.*?(?:-->|$)", re.S)
_FIRST_MARKUP = re.compile(rb"<(?:!doctype\s+([a-z]+)|([a-z_][\w.-]*:)?([a-z_][\w.-]*))", re.I)
_FEED_ELEMENT = re.compile(rb"<(?:rss|feed|rdf:rdf|channel)[\s>]", re.I)
_FIRST_ELEMENT = re.compile(rb"<\w")  # where feedparser's prolog handling stops
_ENTITY_DECL = re.compile(rb"\s+([\w.:-]+)\s+\"([^&\"]*)\"")  # after "<!ENTITY"
_ENTITY_REF = re.compile(rb"&([\w.:-]+);")


def parse_feed(
    content: bytes,
    *,
    url: str,
    content_type: str | None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_INFLATED_BYTES,
) -> ParsedFeed:
    """Parse one response body; raise ParseError when it is not a readable feed.

    ``max_bytes`` (the ``max_feed_bytes`` setting) bounds a gzip body sent without a
    ``Content-Encoding`` label once inflated, as the fetcher bounds a labelled one.
    """
    body = _prepare(content, max_bytes)
    if is_json_document(body, content_type):
        return parse_json_feed(body, url=url)
    _refuse_non_xml(body)
    _refuse_hostile_dtd(body)
    body = repair_utf8(body, content_type)
    import feedparser  # here: a poll that gets only 304s never pays for the import

    result = feedparser.parse(
        io.BytesIO(body),
        response_headers=_response_headers(url, content_type, headers),
        sanitize_html=False,  # the normalise stage reduces HTML to text anyway
        resolve_relative_uris=False,  # only rewrites links inside HTML, which we drop
    )
    entries = result.get("entries") or []
    if not entries and not result.get("version"):
        raise ParseError(_not_a_feed_reason(body))
    feed = result.get("feed") or {}
    return ParsedFeed(
        title=_html(feed.get("title"), feed.get("title_detail")),
        entries=tuple(_entry(i, e) for i, e in enumerate(entries)),
        ttl_seconds=ttl_seconds(feed),
        bozo_reason=bozo_reason(result.get("bozo_exception"), _declaration_added(body))
        if result.get("bozo")
        else None,
        link=_plain_string(feed.get("link")),
    )


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)


def repair_utf8(body: bytes, content_type: str | None) -> bytes:
    """Replace the few invalid bytes of a mostly valid UTF-8 document with U+FFFD.

    Faced with one bad byte under a UTF-8 declaration, feedparser re-decodes the whole
    document as a legacy charset and garbles every valid non-ASCII character. A document
    with no valid multi-byte sequence at all is more likely a mislabelled legacy charset,
    which feedparser's own fallback reads better, so it is left alone.
    """
    declared = _XML_ENCODING.match(body[:300])
    charset = declared.group(1).decode() if declared else None
    if charset is None and content_type:
        found = _CHARSET.search(content_type)
        charset = found.group(1) if found else None
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return body
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        good = sum(1 for ch in text if ord(ch) > 127) - bad
        if good >= bad:
            return text.encode("utf-8")
    return body


def ttl_seconds(feed: Mapping[str, Any]) -> float | None:
    """The publisher's refresh hint: ``<ttl>`` (minutes) or the RSS syndication module."""
    ttl = _positive_number(feed.get("ttl"))
    if ttl is not None:
        return ttl * 60.0
    period, frequency = feed.get("sy_updateperiod"), feed.get("sy_updatefrequency")
    if period is None and frequency is None:
        return None
    seconds = _UPDATE_PERIODS.get(str(period or "daily").strip().lower())
    if seconds is None:
        return None
    return seconds / (_positive_number(frequency) or 1.0)


def bozo_reason(exc: object, declaration_added: bool = False) -> str | None:
    """feedparser's bozo exception as a short sentence; None when it is only about labels."""
    import feedparser

    if exc is None or isinstance(exc, feedparser.NonXMLContentType):
        return None  # a Content-Type that is not an XML type says nothing about the document
    if isinstance(exc, SAXParseException):
        line = exc.getLineNumber()
        if declaration_added and isinstance(line, int) and line > 1:
            line -= 1  # feedparser put an XML declaration line in front of the document
        column = exc.getColumnNumber()
        where = f" at line {line}" if isinstance(line, int) and line > 0 else ""
        if where and isinstance(column, int) and column >= 0:
            where += f", column {column + 1}"
        return f"{exc.getMessage()}{where}"
    text = str(exc).strip()
    return text or type(exc).__name__


def _prepare(content: bytes, max_bytes: int) -> bytes:
    """Inflate an unlabelled gzip body, drop leading whitespace, refuse an empty one."""
    if content.startswith(_GZIP_MAGIC):
        content = _inflate(content, max_bytes)
    bom = _UTF8_BOM if content.startswith(_UTF8_BOM) else b""
    stripped = content[len(bom) :].lstrip(_WHITESPACE)
    if not stripped:
        raise ParseError("empty body")
    if stripped[:1] in (b"<", b"{"):
        return bom + stripped
    return content  # maybe UTF-16/32, where stripping single bytes would misalign


def _inflate(content: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        data = inflater.decompress(content, max_bytes)
    except zlib.error as exc:
        raise ParseError(f"not a feed: corrupt gzip data ({exc})") from None
    if inflater.unconsumed_tail:
        raise ParseError(f"not a feed: gzip data inflates past {max_bytes} bytes")
    return data


def _sniff_head(body: bytes, size: int = 2048) -> bytes:
    """The start of the document as ASCII-compatible bytes (UTF-16/32 NULs dropped)."""
    head = body[:size]
    if _is_wide(head):
        head = head.replace(b"\x00", b"")
    return head


def _is_wide(head: bytes) -> bool:
    """UTF-16/32 by BOM or by the NUL pattern of a leading '<'."""
    return head[:2] in (b"\xff\xfe", b"\xfe\xff") or (b"\x00" in head[:4] and b"<" in head[:4])


def _refuse_non_xml(body: bytes) -> None:
    head = body[:1024]
    if not _is_wide(head) and head[:4] != b"\x4c\x6f\xa7\x94":  # EBCDIC '<?xm'
        controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
        if controls * 20 > len(head):  # over 5% control bytes (random data: ~10%)
            raise ParseError("not a feed: binary data")
    # an HTML page is refused before feedparser reads it, unless it wraps a feed (seen)
    if _root_is_html(_sniff_head(body)) and not _FEED_ELEMENT.search(body):
        raise ParseError("not a feed: HTML document")


def _root_is_html(head: bytes) -> bool:
    match = _FIRST_MARKUP.search(_COMMENT.sub(b"", head))
    if match is None:
        return False
    doctype, _, name = match.groups()
    if doctype is not None:
        return doctype.lower() == b"html"
    return name.lower() in _HTML_ROOTS


def _root_name(head: bytes) -> str | None:
    head = _COMMENT.sub(b"", head)
    match = _FIRST_MARKUP.search(head)
    while match is not None and match.group(1) is not None:  # skip the DOCTYPE
        match = _FIRST_MARKUP.search(head, match.end())
    if match is None:
        return None
    return ((match.group(2) or b"") + match.group(3)).decode("ascii", "replace")


def _not_a_feed_reason(body: bytes) -> str:
    head = _sniff_head(body)
    if _root_is_html(head):
        return "not a feed: HTML document"
    name = _root_name(head)
    if name is None:
        return "not a feed: no XML element found"
    return f"not a feed: root element <{name}> is not RSS, Atom or RDF"


def _refuse_hostile_dtd(body: bytes) -> None:
    """Refuse a prolog that would make feedparser expand or scan without bound.

    feedparser keeps the internal entities declared before the root element (those with
    a plain quoted value) and its fallback parser expands them with no limit, so their
    total expansion is counted here, exactly and in linear time. Its prolog regexes also
    rescan the prolog once per declaration, so a prolog with many declarations and
    many bytes is refused before it gets there.
    """
    text = _as_utf8(body) if _is_wide(body[:4]) else body
    root = _FIRST_ELEMENT.search(text)
    prolog = text[: root.start()] if root else text
    declarations = prolog.count(b"<!ENTITY") + prolog.count(b"<!DOCTYPE")
    if not declarations:
        return
    if declarations * len(prolog) > MAX_PROLOG_WORK:
        raise ParseError(
            f"not a feed: oversized DTD ({declarations} declarations in {len(prolog)} bytes)"
        )
    sizes: dict[bytes, int] = {}
    for declaration in prolog.split(b"<!ENTITY")[1:]:
        match = _ENTITY_DECL.match(declaration)
        if match:
            sizes.setdefault(match.group(1), len(match.group(2)))  # the first one binds
    if not sizes:
        return
    references = Counter(_ENTITY_REF.findall(text))
    expansion = sum(size * references[name] for name, size in sizes.items())
    if expansion > MAX_ENTITY_EXPANSION:
        raise ParseError(
            f"not a feed: internal entities would expand by {expansion} bytes "
            f"(limit {MAX_ENTITY_EXPANSION})"
        )


def _as_utf8(body: bytes) -> bytes:
    codec = "utf-32" if b"\x00\x00" in body[:4] else "utf-16"
    if body[:2] not in (b"\xff\xfe", b"\xfe\xff") and codec == "utf-16":
        codec = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
    return body.decode(codec, errors="replace").encode("utf-8")


def _declaration_added(body: bytes) -> bool:
    """Whether feedparser puts its own XML declaration line in front (shifting lines)."""
    head = body[:64]
    if head.startswith(_UTF8_BOM):
        head = head[3:]
    elif _is_wide(head):
        head = head.lstrip(b"\xff\xfe").replace(b"\x00", b"")
    return not head.startswith(b"<?xml")


def _response_headers(
    url: str, content_type: str | None, headers: Mapping[str, str] | None
) -> dict[str, str]:
    out = {k.lower(): v for k, v in (headers or {}).items()}
    if content_type is not None:
        out["content-type"] = _xml_text_as_application(content_type)
    elif "content-type" not in out:
        # no label: read the document's own declaration, defaulting to UTF-8 (what
        # feedparser does for local data), not HTTP's ISO-8859-1
        out["content-type"] = "application/xml"
    location = out.get("content-location")
    out["content-location"] = urljoin(url, location) if location else url
    return out


def _xml_text_as_application(content_type: str) -> str:
    """``text/xml`` without a charset read as ``application/xml`` (RFC 7303, 2014).

    feedparser follows RFC 3023, which that RFC replaced: a ``text/xml`` body without a
    charset is US-ASCII whatever its XML declaration says. Servers label feeds
    ``text/xml`` all the time, so every UTF-8 feed among them was flagged ill-formed
    ("declared as us-ascii, but parsed as utf-8") and logged on every poll. Now the
    document's own declaration (or BOM) decides, as for ``application/xml``.
    """
    media, _, params = content_type.partition(";")
    kind = media.strip().lower()
    is_xml_text = kind in _XML_TEXT_TYPES or (kind.startswith("text/") and kind.endswith("+xml"))
    if not is_xml_text or _CHARSET.search(params):
        return content_type
    return "application/" + kind[len("text/") :] + (";" + params if params else "")


_XML_TEXT_TYPES = frozenset({"text/xml", "text/xml-external-parsed-entity"})


def _entry(index: int, e: dict[str, Any]) -> ParsedEntry:
    # dict.get, not FeedParserDict.get: no key aliasing (its "updated" silently falls
    # back to "published"), and several times faster
    get = partial(dict.get, e)
    return ParsedEntry(
        index=index,
        guid=_plain_string(get("id")),
        link=_plain_string(get("link")),
        title=_html(get("title"), get("title_detail")),
        summary=_html(get("summary"), get("summary_detail")),
        content=_content(get("content")),
        published=_date(get("published_parsed"), get("published")),
        updated=_date(get("updated_parsed"), get("updated")),
    )


def _content(items: object) -> str | None:
    if not isinstance(items, list) or not items:
        return None
    chosen = next((c for c in items if c.get("type") in _HTML_TYPES), items[0])
    return _html(chosen.get("value"), chosen)


def _html(value: object, detail: object) -> str | None:
    """A feedparser text value as HTML: HTML kept raw, anything else escaped."""
    if not isinstance(value, str) or not value.strip():
        return None
    kind = detail.get("type") if isinstance(detail, Mapping) else "text/html"
    if kind in _HTML_TYPES:
        return value
    return escape(value, quote=False)


def _date(parsed: Any, raw: object) -> datetime | None:
    """feedparser's UTC struct_time, else our own reading of the text (RFC 822 without
    a zone, which feedparser gives up on, is UTC)."""
    if parsed:
        try:
            year, month, day, hour, minute, second = parsed[:6]
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            pass
    return parse_timestamp(raw) if isinstance(raw, str) else None


def _plain_string(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _positive_number(value: object) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number < float("inf") else None
