"""JSON Feed 1.0 / 1.1 (https://jsonfeed.org/version/1.1) -> ParsedFeed.

feedparser reads no JSON, so JSON Feed has its own small reader. It is tolerant the
way readers are (a missing ``version`` is fine when ``items`` is there, ids may be
numbers, relative item URLs are resolved against the document URL) and precise when
it refuses: a truncated body says where it ends, other invalid JSON says what and where.

Text fields come out as HTML, like the rest of the parse stage: ``content_html`` as the
feed gave it, ``content_text``/``summary``/``title`` (item and feed) escaped, so the
normalise stage can treat every field alike.

Everything here is a pure top-level function (it runs inside a process pool).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urljoin

from monitor.errors import ParseError
from monitor.model import ParsedEntry, ParsedFeed

JSON_MEDIA_TYPES = frozenset({"application/feed+json", "application/json"})
_LITERALS = ("true", "false", "null")


def is_json_document(body: bytes, content_type: str | None) -> bool:
    """True when ``body`` (leading whitespace already stripped) should be read as JSON.

    A body starting with ``{`` is JSON whatever the label says; one starting with ``<`` is
    XML even when mislabelled as JSON; otherwise the media type decides.
    """
    first = body[3:4] if body.startswith(b"\xef\xbb\xbf") else body[:1]
    if first == b"{":
        return True
    if first == b"<":
        return False
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime in JSON_MEDIA_TYPES or mime.endswith("+json")


def parse_json_feed(body: bytes, *, url: str) -> ParsedFeed:
    """Read a JSON Feed document; raise ParseError when it is not one."""
    data, bozo_reason = _load(body)
    if not isinstance(data, dict):
        raise ParseError(f"not a feed: JSON document is {_json_kind(data)}, not an object")
    version = data.get("version")
    items = data.get("items")
    is_jsonfeed = isinstance(version, str) and "jsonfeed.org" in version
    if not is_jsonfeed and not isinstance(items, list):
        raise ParseError("not a feed: JSON document without a JSON Feed version or items")
    if items is not None and not isinstance(items, list):
        raise ParseError(f"invalid JSON Feed: items is {_json_kind(items)}, not an array")
    home = _string(data.get("home_page_url"))
    entries = tuple(
        _entry(index, item, url) for index, item in enumerate(items or ()) if isinstance(item, dict)
    )
    return ParsedFeed(
        title=_escaped(data.get("title")),
        entries=entries,
        link=_resolve(url, home),
        bozo_reason=bozo_reason,
    )


def parse_timestamp(text: str | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 or RFC 822 date as an aware UTC datetime; no zone means UTC."""
    if not text:
        return None
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _load(body: bytes) -> tuple[Any, str | None]:
    """The decoded document, and a bozo reason when junk followed it."""
    try:
        encoding = json.detect_encoding(body)
        text = body.decode(encoding, errors="replace")
    except LookupError:  # pragma: no cover - detect_encoding only names stdlib codecs
        text = body.decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff \t\r\n")
    decoder = json.JSONDecoder(strict=False)  # strict=False: raw control chars in strings
    try:
        data, end = decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ParseError(_decode_error(text, exc)) from None
    except RecursionError:
        raise ParseError("invalid JSON Feed: nested too deeply") from None
    if text[end:].strip():  # junk after the document (a PHP warning, say): keep the document
        return data, f"extra data after the JSON document at char {end}"
    return data, None


def _decode_error(text: str, exc: json.JSONDecodeError) -> str:
    end = len(text.rstrip())
    rest = text[exc.pos : end]
    truncated = (
        exc.msg.startswith("Unterminated string")
        or exc.pos >= end
        or (exc.msg == "Expecting value" and any(w.startswith(rest) for w in _LITERALS))
    )
    if truncated:
        return f"invalid JSON Feed: truncated at char {end}"
    return f"invalid JSON Feed: {exc.msg} at line {exc.lineno}, column {exc.colno} (char {exc.pos})"


def _entry(index: int, item: Mapping[str, Any], base: str) -> ParsedEntry:
    link = _string(item.get("url")) or _string(item.get("external_url"))
    content = _string(item.get("content_html"))
    if content is None:
        content = _escaped(item.get("content_text"))
    return ParsedEntry(
        index=index,
        guid=_identifier(item.get("id")),
        link=_resolve(base, link),
        title=_escaped(item.get("title")),
        summary=_escaped(item.get("summary")),
        content=content,
        published=parse_timestamp(_string(item.get("date_published"))),
        updated=parse_timestamp(_string(item.get("date_modified"))),
    )


def _resolve(base: str, link: str | None) -> str | None:
    if not link:
        return None
    try:
        return urljoin(base, link)
    except ValueError:  # e.g. a broken IPv6 literal: keep it as given
        return link


def _identifier(value: object) -> str | None:
    if isinstance(value, bool):  # bool is an int: not an id
        return None
    if isinstance(value, int | float):
        return str(value)
    return _string(value)


def _string(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _escaped(value: object) -> str | None:
    text = _string(value)
    return escape(text, quote=False) if text is not None else None


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
