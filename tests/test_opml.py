"""OPML import into feeds.yaml (comments and layout kept) and OPML 2.0 export."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from monitor.errors import ConfigError
from monitor.opml import (
    ImportReport,
    OpmlFeed,
    append_feeds_to_yaml,
    export_opml,
    import_opml,
    parse_opml,
)

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)

CONFIG = """\
version: 1
settings:                      # every key optional
  http: null                   # e.g. {host: 127.0.0.1, port: 8787}
  user_agent: "feed-monitor/1.0"
feeds:
  - url: https://en.mehrnews.com/rss   # required
    name: Mehr News                    # optional
    tags: [iran, russia]
  # a comment between feeds
  - url: https://b.example.org/feed
    enabled: false   # paused

# Entities we track
entities:
  - name: Wagner Group
    aliases: [Wagner PMC, {text: PMC Wagner, case: exact}]
alerts:
  - name: log
    type: log
"""

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Subscriptions</title></head>
  <body>
    <outline text="News">
      <outline text="World">
        <outline type="rss" text="BBC World" title="BBC" xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml"/>
      </outline>
      <outline type="rss" text="Mehr" xmlUrl="https://en.mehrnews.com/rss"/>
    </outline>
    <outline type="rss" text="Tagged" xmlUrl="http://tagged.example.org/atom"
             category="/Tech/AI, science"/>
    <outline type="rss" text="Gopher" xmlUrl="gopher://old.example.org/feed"/>
    <outline type="rss" text="mailto" xmlUrl="mailto:someone@example.org"/>
  </body>
</opml>
"""


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    return path


def test_round_trip_export_then_import_into_empty_config(tmp_path: Path) -> None:
    feeds = [
        ("Mehr News", "https://en.mehrnews.com/rss", ["iran", "russia"]),
        (None, "https://example.org/feed.xml?a=1&b=2", []),
        ('Fish & "Chips" <daily>', "http://fish.example.org/rss", ["food"]),
    ]
    path = write(tmp_path, "")

    report = import_opml(export_opml(feeds, now=NOW).encode(), path)

    assert report == ImportReport(
        added=tuple(url for _, url, _ in feeds), skipped_existing=(), skipped_invalid=()
    )
    config = load(path)
    assert config["version"] == 1
    assert config["feeds"] == [
        {"url": "https://en.mehrnews.com/rss", "name": "Mehr News", "tags": ["iran", "russia"]},
        {"url": "https://example.org/feed.xml?a=1&b=2"},
        {"url": "http://fish.example.org/rss", "name": 'Fish & "Chips" <daily>', "tags": ["food"]},
    ]


def test_import_creates_a_missing_config(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    report = import_opml(OPML, path)
    assert len(report.added) == 3
    assert [feed["url"] for feed in load(path)["feeds"]] == list(report.added)


def test_import_keeps_comments_order_and_layout(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)

    report = import_opml(OPML, path)

    expected = CONFIG.replace(
        "    enabled: false   # paused\n",
        "    enabled: false   # paused\n"
        "  - url: https://feeds.bbci.co.uk/news/world/rss.xml\n"
        "    name: BBC World\n"
        "    tags: [News, World]\n"
        "  - url: http://tagged.example.org/atom\n"
        "    name: Tagged\n"
        "    tags: [Tech, AI, science]\n",
    )
    assert path.read_text() == expected
    assert report.added == (
        "https://feeds.bbci.co.uk/news/world/rss.xml",
        "http://tagged.example.org/atom",
    )


def test_existing_urls_are_skipped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    opml = OPML.replace(b"https://en.mehrnews.com/rss", b"HTTPS://EN.MehrNews.com/rss")

    report = import_opml(opml, path)

    assert report.skipped_existing == ("HTTPS://EN.MehrNews.com/rss",)
    assert report.skipped_invalid == ("gopher://old.example.org/feed", "mailto:someone@example.org")
    urls = [feed["url"] for feed in load(path)["feeds"]]
    assert urls.count("https://en.mehrnews.com/rss") == 1

    again = import_opml(opml, path)
    assert again.added == ()
    assert set(again.skipped_existing) == {
        "HTTPS://EN.MehrNews.com/rss",
        "https://feeds.bbci.co.uk/news/world/rss.xml",
        "http://tagged.example.org/atom",
    }


def test_nothing_new_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    import_opml(OPML, path)
    before = path.stat()
    import_opml(OPML, path)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_url_repeated_in_the_opml_is_added_once() -> None:
    opml = b"""<opml version="2.0"><body>
      <outline text="A" xmlUrl="https://a.example.org/rss"/>
      <outline text="A again" xmlUrl="https://a.example.org/rss"/>
    </body></opml>"""
    parsed = parse_opml(opml)
    assert len(parsed.feeds) == 2  # the parser reports what is there; import dedupes


def test_a_url_repeated_in_the_opml_is_skipped_on_import(tmp_path: Path) -> None:
    opml = b"""<opml version="2.0"><body>
      <outline text="A" xmlUrl="https://a.example.org/rss"/>
      <outline text="A again" xmlUrl="https://a.example.org/rss"/>
    </body></opml>"""
    report = import_opml(opml, write(tmp_path, "version: 1\n"))
    assert report.added == ("https://a.example.org/rss",)
    assert report.skipped_existing == ("https://a.example.org/rss",)


def test_categories_become_tags() -> None:
    parsed = parse_opml(OPML)
    by_url = {feed.url: feed for feed in parsed.feeds}
    assert by_url["https://feeds.bbci.co.uk/news/world/rss.xml"] == OpmlFeed(
        "https://feeds.bbci.co.uk/news/world/rss.xml", "BBC World", ("News", "World")
    )
    assert by_url["https://en.mehrnews.com/rss"].tags == ("News",)
    assert by_url["http://tagged.example.org/atom"].tags == ("Tech", "AI", "science")


def test_name_falls_back_to_title_and_a_bare_url_is_no_name() -> None:
    opml = b"""<opml version="2.0"><body>
      <outline title="  Only\n title " xmlUrl="https://a.example.org/rss"/>
      <outline text="https://b.example.org/rss" xmlUrl="https://b.example.org/rss"/>
    </body></opml>"""
    names = [feed.name for feed in parse_opml(opml).feeds]
    assert names == ["Only title", None]


@pytest.mark.parametrize(
    "document",
    [
        # billion laughs
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<opml version="2.0"><body><outline text="&lol2;" xmlUrl="https://x.org/"/></body></opml>',
        # external entity
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<opml version="2.0"><body><outline text="&xxe;" xmlUrl="https://x.org/"/></body></opml>',
        # a DOCTYPE hidden from a byte scan by UTF-16
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE opml [<!ENTITY a "b">]>'
        '<opml version="2.0"><body/></opml>'.encode("utf-16"),
        # a bare DOCTYPE
        b'<!DOCTYPE opml SYSTEM "http://127.0.0.1:1/opml.dtd"><opml version="2.0"><body/></opml>',
    ],
)
def test_doctype_and_entities_are_refused(tmp_path: Path, document: bytes) -> None:
    path = write(tmp_path, CONFIG)
    with pytest.raises(ConfigError, match="DOCTYPE"):
        import_opml(document, path)
    assert path.read_text() == CONFIG


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<opml><body>", "not well-formed"),
        (b"<rss version='2.0'/>", "not <opml>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
    ],
)
def test_unreadable_opml_is_a_config_error(document: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_opml(document)


def test_exported_opml_is_valid_opml_2() -> None:
    text = export_opml(
        [
            ("R&D <weekly>", "https://a.example.org/rss?x=1&y=2", ["tech", "science"]),
            (None, "https://b.example.org/atom", []),
            ("Control\x01chars", "https://c.example.org/feed", []),
        ],
        title='My "feeds"',
        now=NOW,
    )
    root = ET.fromstring(text.encode())
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == 'My "feeds"'
    assert parsedate_to_datetime(root.findtext("head/dateCreated") or "") == NOW
    outlines = root.findall("body/outline")
    assert [o.attrib for o in outlines] == [
        {
            "type": "rss",
            "text": "R&D <weekly>",
            "title": "R&D <weekly>",
            "xmlUrl": "https://a.example.org/rss?x=1&y=2",
            "category": "tech,science",
        },
        {
            "type": "rss",
            "text": "https://b.example.org/atom",
            "title": "https://b.example.org/atom",
            "xmlUrl": "https://b.example.org/atom",
        },
        {
            "type": "rss",
            "text": "Controlchars",
            "title": "Controlchars",
            "xmlUrl": "https://c.example.org/feed",
        },
    ]
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "version: 1\nfeeds:\n  - url: https://n.example.org/rss\n"),
        ("# my config\n", "# my config\nversion: 1\nfeeds:\n  - url: https://n.example.org/rss\n"),
        (
            "version: 1\nentities:\n- name: X\n",
            "version: 1\nentities:\n- name: X\nfeeds:\n- url: https://n.example.org/rss\n",
        ),
        (
            "version: 1\nfeeds:    # none yet\nentities: []",
            "version: 1\nfeeds:    # none yet\n  - url: https://n.example.org/rss\nentities: []\n",
        ),
        (
            "version: 1\nfeeds: []   # none yet\n\n# next\nentities: []\n",
            "version: 1\nfeeds:      # none yet\n  - url: https://n.example.org/rss\n"
            "\n# next\nentities: []\n",
        ),
        (
            "feeds: null\n",
            "feeds:\n  - url: https://n.example.org/rss\n",
        ),
        (
            "feeds:\n-   url: https://a.example.org/\n# the end\n",
            "feeds:\n-   url: https://a.example.org/\n"
            "-   url: https://n.example.org/rss\n# the end\n",
        ),
        (
            "version: 1\r\nfeeds:\r\n  - url: https://a.example.org/\r\n",
            "version: 1\r\nfeeds:\r\n  - url: https://a.example.org/\r\n"
            "  - url: https://n.example.org/rss\r\n",
        ),
    ],
)
def test_append_handles_each_shape_of_feeds(before: str, after: str) -> None:
    assert append_feeds_to_yaml(before, [OpmlFeed("https://n.example.org/rss", None, ())]) == after


@pytest.mark.parametrize(
    "text",
    [
        "feeds: [{url: https://a.example.org/}]\n",
        "[1, 2]\n",
        "feeds: 3\n",
        "feeds:\n  - url: a\n  bad indentation: [\n",
    ],
)
def test_append_refuses_what_it_cannot_edit_in_place(text: str) -> None:
    with pytest.raises(ConfigError):
        append_feeds_to_yaml(text, [OpmlFeed("https://n.example.org/rss", None, ())])


def test_names_and_tags_that_need_quoting_survive(tmp_path: Path) -> None:
    feed = OpmlFeed(
        "https://n.example.org/rss?a=1#top", "Zürich: 24 # news", ("123", "null", "x, y")
    )
    path = write(tmp_path, CONFIG)
    path.write_text(append_feeds_to_yaml(CONFIG, [feed]))
    assert load(path)["feeds"][-1] == {
        "url": "https://n.example.org/rss?a=1#top",
        "name": "Zürich: 24 # news",
        "tags": ["123", "null", "x, y"],
    }


def test_write_is_atomic_and_keeps_the_file_mode(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    os.chmod(path, 0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(path)

    import_opml(OPML, link)

    assert link.is_symlink()
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.yaml", "link.yaml"]
    assert "bbci" in path.read_text()
