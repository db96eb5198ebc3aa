"""Parse stage: golden files, the real feeds under shared/data, hostile documents."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import time
import tracemalloc
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import ParseError
from monitor.model import ParsedEntry, ParsedFeed
from monitor.normalize import plain_text, process_document
from monitor.parse import parse_feed
from tests.conftest import FEEDS_DIR

DATA = Path(__file__).parent / "data"
FETCHED = datetime(2026, 4, 25, 12, 0, tzinfo=UTC)
MANIFEST = FEEDS_DIR / "MANIFEST.tsv"
needs_feeds = pytest.mark.skipif(not MANIFEST.exists(), reason="shared feed data not present")

GOLDEN = {
    "rss_relative.xml": "application/rss+xml; charset=utf-8",
    "atom_xmlbase.xml": "application/atom+xml",
    "rdf.xml": "application/rdf+xml",
    "jsonfeed_11.json": "application/feed+json",
    "jsonfeed_noversion.json": "application/json",
    "jsonfeed_truncated.json": "application/feed+json",
}


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _golden_output(name: str) -> object:
    content = (DATA / name).read_bytes()
    url = f"https://example.com/feeds/{name}"
    try:
        parsed = parse_feed(content, url=url, content_type=GOLDEN[name])
        processed = process_document(
            url, content, url=url, content_type=GOLDEN[name], fetched=FETCHED
        )
    except ParseError as exc:
        return {"error": str(exc)}
    feed = asdict(parsed)
    entries = feed.pop("entries")
    return _jsonable(
        {
            "feed": feed,
            "entries": entries,
            "processed_title": processed.title,
            # prepared clustering features are an optimisation, not part of the record
            "articles": [
                {k: v for k, v in asdict(a).items() if k != "features"} for a in processed.articles
            ],
        }
    )


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(name):
    """Each tests/data/<stem>.<ext> parses and normalises to tests/data/<stem>.expected.json.

    UPDATE_GOLDEN=1 rewrites the expected files (review the diff before committing).
    """
    got = _golden_output(name)
    expected_path = DATA / f"{Path(name).stem}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        text = json.dumps(got, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        expected_path.write_text(text, encoding="utf-8")
    assert got == json.loads(expected_path.read_text(encoding="utf-8"))


def _parse(content: bytes, content_type: str | None = None, **kw: Any) -> ParsedFeed:
    return parse_feed(content, url="https://example.com/feed", content_type=content_type, **kw)


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"", None, "empty body"),
        (b" \r\n\t ", "application/rss+xml", "empty body"),
        (b"\xef\xbb\xbf\n", None, "empty body"),
        (
            b"<!DOCTYPE html><html><head><title>x</title></head><body>hi</body></html>",
            "text/html",
            "not a feed: HTML document",
        ),
        (
            b"\n  <!-- c --><HTML lang=en><body><p>hi</p></body></HTML>",
            None,
            "not a feed: HTML document",
        ),
        (
            b"<head><title>Document Moved</title></head><body>moved</body>",
            None,
            "not a feed: HTML document",
        ),
        (
            b"<?xml version='1.0'?><note><to>x</to></note>",
            None,
            "not a feed: root element <note> is not RSS, Atom or RDF",
        ),
        (b"just some text, no markup at all", "text/plain", "not a feed: no XML element found"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image/png", "not a feed: binary data"),
        (
            b'{"rss": {"channel": {}}}',
            "application/json",
            "not a feed: JSON document without a JSON Feed version or items",
        ),
        (b"[1, 2, 3]", "application/json", "not a feed: JSON document is an array, not an object"),
        (
            b'{"version": "https://jsonfeed.org/version/1", "items": [',
            None,
            "invalid JSON Feed: truncated at char 56",
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1", "items": [{"id": "a", "title": "Unfin',
            None,
            "invalid JSON Feed: truncated at char 83",
        ),
        (b'{"items": [], "x": tru', None, "invalid JSON Feed: truncated at char 22"),
        (
            b'{"items": [1 2]}',
            None,
            "invalid JSON Feed: Expecting ',' delimiter at line 1, column 14 (char 13)",
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": {"a": 1}}',
            None,
            "invalid JSON Feed: items is an object, not an array",
        ),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", None, "not a feed: corrupt gzip data"),
    ],
)
def test_refusals(content, content_type, message):
    with pytest.raises(ParseError) as info:
        _parse(content, content_type)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_not_a_feed(seed):
    rng = random.Random(seed)
    content = rng.randbytes(rng.choice([16, 700, 5000, 200_000]))
    with pytest.raises(ParseError):
        _parse(content, "application/octet-stream")


def test_bytes_that_name_a_file_are_never_opened(tmp_path):
    secret = tmp_path / "feed.xml"
    secret.write_text(
        "<rss version='2.0'><channel><item><title>SECRET</title></item></channel></rss>"
    )
    with pytest.raises(ParseError):
        _parse(str(secret).encode())


def test_gzip_body_is_inflated():
    plain = (DATA / "rss_relative.xml").read_bytes()
    parsed = _parse(gzip.compress(plain), "application/rss+xml")
    assert parsed == _parse(plain, "application/rss+xml")


def test_gzip_bomb_is_refused():
    bomb = gzip.compress(b"<rss>" + b" " * (64 * 1024 * 1024))
    with pytest.raises(ParseError, match="inflates past"):
        _parse(bomb)


def test_unlabelled_gzip_is_bounded_by_max_bytes():
    """The fetcher bounds a body labelled gzip by max_feed_bytes; an unlabelled one is
    found and inflated here, within the same bound."""
    plain = (DATA / "rss_relative.xml").read_bytes()
    packed = gzip.compress(plain)
    with pytest.raises(ParseError, match=f"gzip data inflates past {len(plain) - 1} bytes"):
        _parse(packed, "application/rss+xml", max_bytes=len(plain) - 1)
    assert _parse(packed, "application/rss+xml", max_bytes=len(plain)).entries


# --- feed details -------------------------------------------------------------------------


def _rss(channel_extra: str = "", item: str = "<title>t</title>", decl: bool = True) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8"?>\n' if decl else ""
    return (
        f'{head}<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">'
        f"<channel><title>c</title>{channel_extra}<item>{item}</item></channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    ("extra", "seconds"),
    [
        ("", None),
        ("<ttl>60</ttl>", 3600.0),
        ("<ttl> 15 </ttl>", 900.0),
        ("<ttl>0</ttl>", None),
        ("<ttl>soon</ttl>", None),
        ("<sy:updatePeriod>hourly</sy:updatePeriod>", 3600.0),
        (
            "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency>",
            900.0,
        ),
        ("<sy:updateFrequency>2</sy:updateFrequency>", 43200.0),
        ("<sy:updatePeriod>weekly</sy:updatePeriod>", 604800.0),
        ("<sy:updatePeriod>fortnightly</sy:updatePeriod>", None),
        ("<ttl>5</ttl><sy:updatePeriod>daily</sy:updatePeriod>", 300.0),
    ],
)
def test_ttl_seconds(extra, seconds):
    assert _parse(_rss(extra)).ttl_seconds == seconds


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Sat, 25 Apr 2026 09:30:00 +0200", datetime(2026, 4, 25, 7, 30, tzinfo=UTC)),
        ("Sat, 25 Apr 2026 09:30:00 GMT", datetime(2026, 4, 25, 9, 30, tzinfo=UTC)),
        ("Sat, 25 Apr 2026 09:30:00", datetime(2026, 4, 25, 9, 30, tzinfo=UTC)),  # no zone: UTC
        ("2026-04-25T09:30:00", datetime(2026, 4, 25, 9, 30, tzinfo=UTC)),
        ("2026-04-25T09:30:00-05:00", datetime(2026, 4, 25, 14, 30, tzinfo=UTC)),
        ("yesterday-ish", None),
    ],
)
def test_dates_are_aware_utc(date, expected):
    entry = _parse(_rss(item=f"<title>t</title><pubDate>{date}</pubDate>")).entries[0]
    assert entry.published == expected
    assert entry.published is None or entry.published.tzinfo is UTC


def test_bozo_reason_names_the_line_and_column():
    doc = _rss(item="<title>a &amp b</title>")
    assert _parse(doc).bozo_reason == ("not well-formed (invalid token) at line 2, column 120")
    # without an XML declaration feedparser adds one line in front: still the real line
    assert _parse(doc.split(b"\n", 1)[1]).bozo_reason == (
        "not well-formed (invalid token) at line 1, column 120"
    )


def test_bozo_feed_still_returns_entries():
    doc = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Broken</title>
<item><title>Good</title><link>https://example.com/good</link></item>
<item><title>Bad & worse</title><link>https://example.com/bad</link></item>
</channel></rss>"""
    parsed = _parse(doc, "application/rss+xml")
    assert [e.title for e in parsed.entries] == ["Good", "Bad &amp; worse"]
    assert parsed.bozo_reason == "not well-formed (invalid token) at line 4, column 19"


def test_mislabelled_content_type_is_not_a_bozo_reason():
    parsed = _parse(_rss(), "text/html; charset=utf-8")
    assert parsed.bozo_reason is None and len(parsed.entries) == 1


@pytest.mark.parametrize("content_type", ["text/xml", "TEXT/XML ; format=x", "text/rss+xml"])
def test_text_xml_without_charset_follows_the_declaration(content_type):
    """RFC 7303: not US-ASCII (RFC 3023, which feedparser follows), so not ill-formed."""
    title = "caf\u00e9 \u2014 na\u00efve"
    doc = '<?xml version="1.0" encoding="{}"?><rss version="2.0"><channel><item><title>{}'
    doc += "</title></item></channel></rss>"
    parsed = _parse(doc.format("utf-8", title).encode(), content_type)
    assert parsed.bozo_reason is None
    assert parsed.entries[0].title == title
    cyrillic = "\u0436\u0430\u0431\u0430"
    parsed = _parse(doc.format("windows-1251", cyrillic).encode("cp1251"), content_type)
    assert parsed.bozo_reason is None
    assert parsed.entries[0].title == cyrillic


def test_a_charset_given_with_text_xml_still_wins():
    doc = _rss(item="<title>caf\xe9</title>")  # declared utf-8, really Latin-1
    parsed = _parse(doc, "text/xml; charset=ISO-8859-1")
    assert parsed.entries[0].title == "caf\u00e9"


def test_leading_whitespace_before_declaration_is_tolerated():
    doc = b"\n\n  " + _rss(item="<title>caf\xc3\xa9</title>")
    parsed = _parse(doc)
    assert parsed.bozo_reason is None
    assert parsed.entries[0].title == "caf\u00e9"


def test_headers_carry_charset_and_base():
    doc = (
        b'<rss version="2.0"><channel><item><title>caf\xe9</title><link>/a</link></item>'
        b"</channel></rss>"
    )
    parsed = parse_feed(
        doc,
        url="https://example.com/feeds/x.xml",
        content_type=None,
        headers={
            "Content-Type": "application/xml; charset=iso-8859-1",
            "Content-Location": "/elsewhere/feed.xml",
        },
    )
    assert parsed.entries[0].title == "caf\u00e9"
    assert parsed.entries[0].link == "https://example.com/a"
    assert parsed.bozo_reason is None


def test_custom_entities_within_budget_still_expand():
    decls = "".join(f'<!ENTITY e{i} "v{i}">\n' for i in range(300))
    refs = "".join(f"&e{i};" for i in range(300))
    doc = f"<!DOCTYPE rss [\n{decls}]>\n<rss version='2.0'><channel><item><title>{refs}"
    parsed = _parse((doc + "</title></item></channel></rss>").encode())
    assert parsed.entries[0].title is not None
    assert parsed.entries[0].title.startswith("v0v1v2")


def test_plain_text_fields_are_escaped_and_html_fields_kept():
    doc = b"""<feed xmlns="http://www.w3.org/2005/Atom"><title>f</title>
<entry><title type="text">1 &lt; 2</title><id>x</id>
<summary type="html">&lt;b&gt;bold&lt;/b&gt;</summary></entry></feed>"""
    entry = _parse(doc).entries[0]
    assert entry.title == "1 &lt; 2"
    assert entry.summary == "<b>bold</b>"


def test_zero_entries_with_a_version_is_a_feed():
    parsed = _parse(b'<rss version="2.0"><channel><title>Empty</title></channel></rss>')
    assert parsed.title == "Empty" and parsed.entries == ()


def test_json_detection_by_body_and_label():
    body = b' {"items": [{"id": "1", "title": "x"}]}'
    assert len(_parse(body, "text/html").entries) == 1  # a body starting with { is JSON
    xml = _rss()
    assert len(_parse(xml, "application/json").entries) == 1  # a body starting with < is XML
    with pytest.raises(ParseError, match="invalid JSON Feed"):
        _parse(b"not json", "application/feed+json")


def test_json_feed_odd_values():
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "items": [
            {"id": True, "url": "http://[::1", "title": 5, "date_published": "not a date"},
            {"id": 1.5, "url": ["x"], "content_text": "  ", "summary": "<b>s</b>"},
        ],
    }
    first, second = _parse(json.dumps(doc).encode()).entries
    assert (first.guid, first.link, first.title, first.published) == (
        None,
        "http://[::1",
        None,
        None,
    )
    assert (second.guid, second.link, second.content, second.summary) == (
        "1.5",
        None,
        None,
        "&lt;b&gt;s&lt;/b&gt;",
    )


def test_json_feed_tolerates_junk_after_the_document():
    parsed = _parse(b'{"items": [{"id": "1"}]}\n<b>Warning</b>: PHP notice')
    assert len(parsed.entries) == 1
    assert parsed.bozo_reason == "extra data after the JSON document at char 24"


# --- hostile XML --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        # classic external general entity
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{secret}">\n]>\n'
        '<rss version="2.0"><channel><title>&xxe;</title><item><title>&xxe;</title>'
        "<description>&xxe;</description></item></channel></rss>",
        # external entity declared on the line of the root element
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret}">]><rss version="2.0"><channel>'
        "<item><title>x &xxe; y</title></item></channel></rss>",
        # parameter entity
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY % p SYSTEM "{secret}">\n%p;\n]>\n'
        '<rss version="2.0"><channel><item><title>t</title></item></channel></rss>',
        # external DTD that declares an entity pointing at the file
        '<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{dtd}">\n'
        '<rss version="2.0"><channel><item><title>t &secret;</title></item></channel></rss>',
    ],
    ids=["general", "one-line", "parameter", "external-dtd"],
)
def test_external_entities_are_never_expanded(tmp_path, template):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-7f3a")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY secret SYSTEM "{secret.as_uri()}">')
    doc = template.replace("{secret}", secret.as_uri()).replace("{dtd}", dtd.as_uri())
    try:
        parsed = _parse(doc.encode(), "application/rss+xml")
    except ParseError:
        return
    assert "TOPSECRET" not in repr(parsed)
    assert "TOPSECRET" not in repr(
        process_document(
            "https://example.com/feed",
            doc.encode(),
            url="https://example.com/feed",
            content_type="application/rss+xml",
            fetched=FETCHED,
        )
    )


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title>
<item><title>&lol9;</title><description>&lol9; &lol;</description></item></channel></rss>"""


def _quadratic_blowup(encoding: str = "utf-8") -> bytes:
    value = "x" * 100_000
    refs = "&a;" * 10_000
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n'
        f'<rss version="2.0"><channel><item><title>t</title><description>{refs}</description>'
        "</item></channel></rss>"
    ).encode(encoding)


def _padded_prolog_blowup() -> bytes:
    doc = _quadratic_blowup()
    return doc.replace(b"<!DOCTYPE", b"<!-- pad -->\n" * 20_000 + b"<!DOCTYPE", 1)


_RSS_BODY = b'<rss version="2.0"><channel><item><title>t</title></item></channel></rss>'


@pytest.mark.parametrize(
    "doc",
    [
        BILLION_LAUGHS,
        _quadratic_blowup(),
        _quadratic_blowup("utf-16"),
        _padded_prolog_blowup(),
        b'<!ENTITY a "\n' * 20_000 + _RSS_BODY,  # feedparser's prolog regex: quadratic
        b"<!DOCTYPE a\n" * 20_000 + _RSS_BODY,
        b'<!ENTITY a "' * 100_000,
    ],
    ids=[
        "billion-laughs",
        "quadratic-blowup",
        "quadratic-blowup-utf16",
        "padded-prolog",
        "unclosed-entity-declarations",
        "unclosed-doctypes",
        "no-root",
    ],
)
def test_entity_expansion_is_bounded(doc):
    tracemalloc.start()
    started = time.monotonic()
    try:
        parsed = _parse(doc, "application/rss+xml")
    except ParseError as exc:
        parsed = None
        assert "entities" in str(exc) or "not a feed" in str(exc)
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 2
    assert peak < 64 * 1024 * 1024
    if parsed is not None:
        assert len(repr(parsed)) < 100_000


# --- real feeds ---------------------------------------------------------------------------


def _manifest() -> list[dict[str, str]]:
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"), strict=False)) for line in lines[1:]]


def _corpus_headers(content: bytes) -> dict[str, str]:
    """The HTTP headers a feedparser corpus file asks for in its ``Header:`` comment."""
    headers: dict[str, str] = {}
    for match in re.finditer(rb"^Header:\s*([\w-]+):\s*(.*?)\s*$", content[:2000], re.M):
        headers[match.group(1).decode()] = match.group(2).decode("latin-1")
    return headers


@needs_feeds
@pytest.mark.parametrize("name", ["bbc.xml", "heise.xml", "tagesschau.xml"])
def test_fast_news_reader_entry_counts(name):
    rel = f"fast-news-reader/tests/fixtures/{name}"
    row = next(r for r in _manifest() if r["path"] == rel)
    parsed = _parse((FEEDS_DIR / rel).read_bytes())
    assert len(parsed.entries) == int(row["items"])
    assert parsed.title == row["feed_title"]
    assert parsed.bozo_reason is None
    assert all(e.published is not None and e.published.tzinfo is UTC for e in parsed.entries)
    assert all(e.link and e.link.startswith("https://") for e in parsed.entries)


@needs_feeds
@pytest.mark.parametrize(
    ("rel", "title", "needle"),
    [
        (
            "miniflux-v2/internal/reader/parser/testdata/encoding_ISO-8859-1.xml",
            "Golem.de",
            "Viele Spieler wünschen sich eine PC-Version",
        ),
        (
            "miniflux-v2/internal/reader/parser/testdata/encoding_WINDOWS-1251.xml",
            "iBash.Org.Ru",
            "есть у кого жаба программер",
        ),
    ],
)
@pytest.mark.parametrize("content_type", [None, "text/xml", "application/rss+xml"])
def test_declared_charsets_decode(rel, title, needle, content_type):
    parsed = _parse((FEEDS_DIR / rel).read_bytes(), content_type)
    assert parsed.title == title
    assert any(needle in (e.summary or "") for e in parsed.entries)
    text = " ".join(f"{e.title} {e.summary}" for e in parsed.entries)
    assert "\ufffd" not in text and "Ã" not in text


@needs_feeds
def test_iso_8859_1_titles_round_trip():
    rel = "miniflux-v2/internal/reader/parser/testdata/encoding_ISO-8859-1.xml"
    parsed = _parse((FEEDS_DIR / rel).read_bytes(), "text/xml; charset=ISO-8859-1")
    assert any("ü" in (e.summary or "") for e in parsed.entries)


RSPARSER = "RSParser/Tests/RSParserTests/Resources"


@needs_feeds
@pytest.mark.parametrize(
    "name",
    [
        "3960.json",
        "DaringFireball.json",
        "allthis.json",
        "authors.json",
        "curt.json",
        "inessential.json",
        "jsonfeed-extension.json",
        "pxlnv.json",
        "rose.json",
    ],
)
def test_rsparser_json_feeds_parse(name):
    content = (FEEDS_DIR / RSPARSER / name).read_bytes()
    data = json.loads(content)
    parsed = _parse(content, "application/feed+json")
    assert len(parsed.entries) == len(data["items"])
    assert plain_text(parsed.title) == data.get("title", "")
    assert all(e.guid for e in parsed.entries)
    assert parsed.bozo_reason is None


@needs_feeds
def test_rsparser_truncated_json_feed_raises():
    content = (FEEDS_DIR / RSPARSER / "allthis-partial.json").read_bytes()
    with pytest.raises(ParseError, match=r"^invalid JSON Feed: truncated at char \d+$"):
        _parse(content, "application/feed+json")


@needs_feeds
def test_rsparser_rss_in_json_is_not_a_feed():
    content = (FEEDS_DIR / RSPARSER / "ScriptingNews.json").read_bytes()
    with pytest.raises(ParseError, match="^not a feed: JSON document"):
        _parse(content, "application/json")


@needs_feeds
def test_versionless_json_feed_parses():
    data = json.loads((FEEDS_DIR / RSPARSER / "inessential.json").read_bytes())
    del data["version"]
    parsed = _parse(json.dumps(data).encode(), None)
    assert len(parsed.entries) == len(data["items"])


@needs_feeds
@pytest.mark.parametrize(
    "rel",
    [
        "node-feedparser/test/feeds/notafeed.html",
        "miniflux-v2/internal/reader/encoding/testdata/utf8.html",
        "miniflux-v2/internal/reader/encoding/testdata/iso-8859-1-meta-after-1024.html",
        "rss-parser/test/input/unrecognized.rss",
    ],
)
def test_html_pages_are_not_feeds(rel):
    with pytest.raises(ParseError, match="^not a feed: HTML document$"):
        _parse((FEEDS_DIR / rel).read_bytes(), "text/html")


@needs_feeds
def test_feed_wrapped_in_html_still_parses():
    rel = "feedjira/spec/sample_feeds/DuplicateContentAtomFeed.xml"
    assert len(_parse((FEEDS_DIR / rel).read_bytes()).entries) == 10


@needs_feeds
def test_stored_gzip_files_parse():
    rel = "node-feedparser/test/feeds/compressed.xml"
    parsed = _parse((FEEDS_DIR / rel).read_bytes())
    assert len(parsed.entries) == 10
    assert parsed.title is not None and "Оренбурга" in parsed.title


@needs_feeds
def test_sweep_every_file():
    """Every file in the corpus: a ParsedFeed or a ParseError, nothing else, and fast."""
    slow: list[tuple[str, float]] = []
    outcomes = {"parsed": 0, "refused": 0}
    for row in _manifest():
        content = (FEEDS_DIR / row["path"]).read_bytes()
        headers = _corpus_headers(content) if row["path"].startswith("feedparser/") else {}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        started = time.process_time()
        try:
            parsed = parse_feed(
                content,
                url="https://example.com/" + row["path"],
                content_type=content_type,
                headers=headers,
            )
        except ParseError as exc:
            assert str(exc)
            outcomes["refused"] += 1
        else:
            assert all(isinstance(e, ParsedEntry) for e in parsed.entries)
            outcomes["parsed"] += 1
        elapsed = time.process_time() - started
        if elapsed > 3:
            slow.append((row["path"], elapsed))
    assert not slow
    assert outcomes["parsed"] > 2000
