"""OPML in and out: add an OPML's feeds to feeds.yaml, print the configured feeds as OPML.

    import_opml(opml_bytes, feeds_yaml) -> ImportReport   reads and (atomically) writes the file
    parse_opml(opml_bytes) -> ParsedOpml                   pure
    append_feeds_to_yaml(yaml_text, feeds) -> str          pure
    export_opml(feeds) -> str                              pure

Import keeps feeds.yaml as the user wrote it. ruamel.yaml (round-trip mode) reads the
file to find the ``feeds:`` list, its indentation and the URLs already there, and
renders the new items; the items are then spliced into the original text after the
last feed, so every other byte (comments, key order, quoting, ``null`` spellings,
blank lines) is unchanged. The result is read back and compared with the intent
before anything is written.

OPML is parsed with xml.etree; documents with a DOCTYPE or an entity declaration are
refused (no entity expansion, no external entities).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from monitor.errors import ConfigError, MonitorError

DEFAULT_TITLE = "feed-monitor feeds"

_DTD_REFUSED = (
    "OPML: the document declares a DOCTYPE or entities, which are refused"
    " (entity expansion and external entities are unsafe); remove the declaration"
)
_NOT_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINE_BREAK = re.compile(r"(?<=\r\n)|(?<=[\n\x85\u2028\u2029])|(?<=\r)(?!\n)")
_EMPTY_FEEDS = re.compile(
    r"^(?P<key>feeds[ \t]*:)(?P<value>[ \t]*(?:null|Null|NULL|~|\[[ \t]*\])?)(?P<rest>[ \t]*#.*)?$"
)
_DEFAULT_DASH, _DEFAULT_KEY = 2, 4  # "feeds:\n  - url: ..." as in the documented example


@dataclass(frozen=True)
class OpmlFeed:
    """One feed outline: its xmlUrl, display name (``None``: use the feed's title), tags."""

    url: str
    name: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ParsedOpml:
    feeds: tuple[OpmlFeed, ...]  # http(s) feeds, in document order
    invalid: tuple[str, ...]  # xmlUrl values that are not http(s) URLs


@dataclass(frozen=True)
class ImportReport:
    added: tuple[str, ...]  # URLs appended to feeds.yaml, in order
    skipped_existing: tuple[str, ...]  # already configured (or repeated in the OPML)
    skipped_invalid: tuple[str, ...]  # not an http or https URL


def import_opml(opml_bytes: bytes, yaml_path: Path) -> ImportReport:
    """Append the OPML's new feeds to ``yaml_path`` (created when missing).

    Raises ``ConfigError`` for an unreadable OPML or feeds.yaml (nothing is written)
    and ``MonitorError`` when the file cannot be written.
    """
    parsed = parse_opml(opml_bytes)
    path = yaml_path.resolve()  # through a symlink: replace the file, not the link
    text, bom = _read_text(path)
    known = _configured_urls(_load_yaml(text))
    added: list[OpmlFeed] = []
    existing: list[str] = []
    for feed in parsed.feeds:
        key = _url_key(feed.url)
        if key in known:
            existing.append(feed.url)
        else:
            known.add(key)
            added.append(feed)
    if added:
        _write_atomically(
            path, (codecs.BOM_UTF8 if bom else b"") + append_feeds_to_yaml(text, added).encode()
        )
    return ImportReport(
        added=tuple(f.url for f in added),
        skipped_existing=tuple(existing),
        skipped_invalid=parsed.invalid,
    )


def parse_opml(opml_bytes: bytes) -> ParsedOpml:
    """The feed outlines of an OPML document; nested outlines without xmlUrl are categories."""
    root = _parse_xml(opml_bytes)
    if root.tag != "opml":
        raise ConfigError([f"OPML: the root element is <{root.tag}>, not <opml>"])
    body = root.find("body")
    if body is None:
        raise ConfigError(["OPML: the document has no <body>"])
    feeds: list[OpmlFeed] = []
    invalid: list[str] = []
    stack: list[tuple[ET.Element, tuple[str, ...]]] = [
        (outline, ()) for outline in reversed(body.findall("outline"))
    ]
    while stack:  # depth-first in document order, without recursion
        outline, path = stack.pop()
        attrs = {name.lower(): value for name, value in outline.attrib.items()}
        label = _clean(attrs.get("text") or attrs.get("title") or "")
        xml_url = attrs.get("xmlurl")
        if xml_url is None:
            inner = (*path, label) if label else path
            stack.extend((child, inner) for child in reversed(outline.findall("outline")))
            continue
        url = xml_url.strip()
        if not _is_http_url(url):
            invalid.append(xml_url)
            continue
        tags = _unique((*path, *_split_categories(attrs.get("category", ""))))
        feeds.append(OpmlFeed(url, label if label and label != url else None, tags))
    return ParsedOpml(tuple(feeds), tuple(invalid))


def export_opml(
    feeds: Sequence[tuple[str | None, str, Sequence[str]]],
    title: str = DEFAULT_TITLE,
    *,
    now: datetime | None = None,
) -> str:
    """An OPML 2.0 document listing ``(name, url, tags)``; tags go to ``category``."""
    created = (now or datetime.now(UTC)).astimezone(UTC)
    root = ET.Element("opml", {"version": "2.0"})
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = _xml_safe(title)
    ET.SubElement(head, "dateCreated").text = format_datetime(created, usegmt=True)
    body = ET.SubElement(root, "body")
    for name, url, tags in feeds:
        label = _xml_safe(name or url)
        attrs = {"type": "rss", "text": label, "title": label, "xmlUrl": _xml_safe(url)}
        categories = [_xml_safe(tag) for tag in tags if tag]
        if categories:
            attrs["category"] = ",".join(categories)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


# --- OPML parsing -----------------------------------------------------------------------


class _DoctypeRefused(Exception):
    pass


class _NoDoctypeBuilder(ET.TreeBuilder):
    """Stops the parse at a DOCTYPE, before any entity declaration is read."""

    def doctype(self, name: str, pubid: str, system: str) -> None:
        raise _DoctypeRefused


def _parse_xml(data: bytes) -> ET.Element:
    if _declares_dtd(data):
        raise ConfigError([_DTD_REFUSED])
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(data)
        root: ET.Element = parser.close()
    except _DoctypeRefused:
        raise ConfigError([_DTD_REFUSED]) from None
    except ET.ParseError as exc:
        raise ConfigError([f"OPML: not well-formed XML: {exc}"]) from None
    return root


def _declares_dtd(data: bytes) -> bool:
    """A fast textual check; the parser's doctype hook covers encodings this misses."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        text = data.decode("utf-32", "replace")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", "replace")
    else:
        text = data.decode("latin-1")  # markup is ASCII in every ASCII-compatible encoding
    upper = text.upper()
    return "<!DOCTYPE" in upper or "<!ENTITY" in upper


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    spaced = any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in url)
    return parts.scheme.lower() in ("http", "https") and bool(host) and not spaced


def _split_categories(value: str) -> list[str]:
    """OPML 2.0 ``category``: comma-separated, each possibly a slash path (``/News/World``)."""
    return [part for item in value.split(",") for part in item.split("/")]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    cleaned = (_clean(item) for item in items)
    return tuple(dict.fromkeys(item for item in cleaned if item))


def _xml_safe(text: str) -> str:
    return _NOT_XML_CHARS.sub("", text)


# --- feeds.yaml --------------------------------------------------------------------------


def _round_trip_yaml() -> YAML:
    yaml = YAML()  # round-trip mode: keeps line and column of every node
    yaml.width = 4096  # never fold a long URL or name
    return yaml


def _load_yaml(text: str) -> object:
    try:
        return _round_trip_yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"feeds.yaml: {where}{problem}"]) from None


def _configured_urls(doc: object) -> set[str]:
    if not isinstance(doc, CommentedMap):
        return set()
    feeds = doc.get("feeds")
    if not isinstance(feeds, list):
        return set()
    return {
        _url_key(item["url"].strip())
        for item in feeds
        if isinstance(item, dict) and isinstance(item.get("url"), str)
    }


def _url_key(url: str) -> str:
    """Scheme and host are case-insensitive; the rest of a URL is compared as written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))


def append_feeds_to_yaml(text: str, feeds: Sequence[OpmlFeed]) -> str:
    """``text`` with ``feeds`` appended to its ``feeds:`` list, everything else as it was."""
    if not feeds:
        return text
    doc = _load_yaml(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = [line for line in _LINE_BREAK.split(text) if line]
    if lines and not _ends_line(lines[-1]):
        lines[-1] += newline
    if doc is None:  # empty, or only comments
        block = ["version: 1" + newline, "feeds:" + newline]
        block += _render_items(feeds, _DEFAULT_DASH, _DEFAULT_KEY, newline)
        result = "".join(lines + block)
    elif not isinstance(doc, CommentedMap) or doc.fa.flow_style():
        raise ConfigError(["feeds.yaml: the top level must be a block mapping (key: value lines)"])
    else:
        result = _append_to_mapping(doc, lines, feeds, newline)
    _check(doc, result, feeds)
    return result


def _append_to_mapping(
    doc: CommentedMap, lines: list[str], feeds: Sequence[OpmlFeed], newline: str
) -> str:
    base = doc.lc.col
    dash, key = _item_indent(doc)
    current = doc.get("feeds")
    if "feeds" not in doc:
        block = [" " * base + "feeds:" + newline]
        block += _render_items(feeds, base + dash, base + key, newline)
        return "".join(lines + block)
    key_line = doc.lc.key("feeds")[0]
    if current is None or (isinstance(current, CommentedSeq) and not current):
        body = lines[key_line].rstrip()
        match = _EMPTY_FEEDS.match(body[base:]) if body[:base].strip() == "" else None
        if match is None:
            raise ConfigError([f"feeds.yaml: line {key_line + 1}: cannot add to this `feeds:`"])
        rest = match["rest"]  # a comment keeps its column
        emptied = match["key"] + (" " * len(match["value"]) + rest if rest else "")
        lines[key_line] = body[:base] + emptied + newline
        block = _render_items(feeds, base + dash, base + key, newline)
        return "".join(lines[: key_line + 1] + block + lines[key_line + 1 :])
    if not isinstance(current, CommentedSeq) or current.fa.flow_style():
        raise ConfigError(
            [
                f"feeds.yaml: line {key_line + 1}: `feeds` must be a block list (`- url: ...`"
                " lines) to import into it"
            ]
        )
    item_dash, item_key = _seq_indent(current) or (base + dash, base + key)
    at = _end_of_value(doc, "feeds", lines, base)
    block = _render_items(feeds, item_dash, item_key, newline)
    return "".join(lines[:at] + block + lines[at:])


def _item_indent(doc: CommentedMap) -> tuple[int, int]:
    """Dash and key columns, relative to the top level, of the file's other lists."""
    for value in doc.values():
        if isinstance(value, CommentedSeq) and not value.fa.flow_style():
            found = _seq_indent(value)
            if found:
                return found[0] - doc.lc.col, found[1] - doc.lc.col
    return _DEFAULT_DASH, _DEFAULT_KEY


def _seq_indent(seq: CommentedSeq) -> tuple[int, int] | None:
    """Columns of the dash and of the first key of a ``- key: value`` list, if it is one."""
    first = seq[0] if seq else None
    if not isinstance(first, CommentedMap) or first.fa.flow_style():
        return None
    if first.lc.line != seq.lc.line:  # "-" alone on its line, keys below
        return seq.lc.col, seq.lc.col + 2
    return seq.lc.col, first.lc.col


def _end_of_value(doc: CommentedMap, key: str, lines: list[str], base: int) -> int:
    """The line index just after ``key``'s block value, before any blank lines and
    top-level comments that lead into the next key (or end the file)."""
    keys = list(doc.keys())
    position = keys.index(key)
    start = doc.lc.key(key)[0]
    end = doc.lc.key(keys[position + 1])[0] if position + 1 < len(keys) else len(lines)
    while end > start + 1 and _is_trailer(lines[end - 1], base):
        end -= 1
    return end


def _is_trailer(line: str, base: int) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return stripped in ("", "...") or (stripped.startswith("#") and indent <= base)


def _render_items(feeds: Sequence[OpmlFeed], dash: int, key: int, newline: str) -> list[str]:
    yaml = _round_trip_yaml()
    key = max(key, dash + 2)
    first = " " * dash + "-" + " " * (key - dash - 1)
    rest = " " * key
    out: list[str] = []
    for feed in feeds:
        buffer = io.StringIO()
        yaml.dump(_item(feed), buffer)
        for index, line in enumerate(buffer.getvalue().splitlines()):
            out.append((first if index == 0 else rest) + line + newline)
    return out


def _check(before: object, text: str, feeds: Sequence[OpmlFeed]) -> None:
    """Read the new text back: the same document, plus exactly the new feed items."""
    intended: dict[Any, Any] = dict(before) if isinstance(before, CommentedMap) else {"version": 1}
    intended["feeds"] = list(intended.get("feeds") or []) + [_item(feed) for feed in feeds]
    after = _load_yaml(text)
    if not isinstance(after, CommentedMap) or list(after.items()) != list(intended.items()):
        raise ConfigError(
            [
                "feeds.yaml: its layout is too unusual to add the feeds without reformatting"
                " it; add them by hand"
            ]
        )


def _item(feed: OpmlFeed) -> CommentedMap:
    item = CommentedMap()
    item["url"] = feed.url
    if feed.name:
        item["name"] = feed.name
    if feed.tags:
        tags = CommentedSeq(feed.tags)
        tags.fa.set_flow_style()
        item["tags"] = tags
    return item


def _ends_line(line: str) -> bool:
    return line.endswith(("\n", "\r", "\x85", "\u2028", "\u2029"))


def _read_text(path: Path) -> tuple[str, bool]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "", False
    except OSError as exc:
        raise MonitorError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig"), data.startswith(codecs.BOM_UTF8)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"feeds.yaml: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path``."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise MonitorError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temp)
        raise MonitorError(f"cannot write {path}: {exc.strerror or exc}") from exc
