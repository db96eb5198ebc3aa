"""Normalise stage: canonical URLs, plain text, entries -> articles, the pool entry point."""

from __future__ import annotations

import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.model import Article, ParsedEntry, ParsedFeed
from monitor.normalize import (
    ProcessedFeed,
    canonical_url,
    content_hash,
    normalize_entries,
    plain_text,
    process_document,
)
from monitor.textfeatures import prepare

DATA = Path(__file__).parent / "data"
FETCHED = datetime(2026, 4, 25, 12, 0, tzinfo=UTC)
FEED = "https://example.com/feed.xml"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://WWW.Example.COM/Path/Case", "https://www.example.com/Path/Case"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&utm_campaign=x",
            "https://example.com/a",
        ),
        ("https://example.com/a?id=7&UTM_Source=rss", "https://example.com/a?id=7"),
        (
            "https://example.com/a?fbclid=1&gclid=2&dclid=3&msclkid=4&yclid=5&igshid=6&id=1",
            "https://example.com/a?id=1",
        ),
        (
            "https://example.com/a?mc_cid=1&mc_eid=2&_ga=3&ocid=4&cmpid=5&ref=6&ref_src=7",
            "https://example.com/a",
        ),
        (
            "https://www.bbc.com/news/articles/x?at_medium=RSS&at_campaign=rss",
            "https://www.bbc.com/news/articles/x",
        ),
        (
            "https://example.com/a?xtor=RSS-1&pk_campaign=c&mtm_source=s&hsa_ad=1",
            "https://example.com/a",
        ),
        (
            "https://example.com/a?referrer=me&source=x",
            "https://example.com/a?referrer=me&source=x",
        ),
        ("https://example.com/a?", "https://example.com/a"),
        ("https://example.com/a?&&b=1&", "https://example.com/a?b=1"),
        (
            "https://example.com/a?q=hello%20world&a=%e2%82%ac",
            "https://example.com/a?a=%E2%82%AC&q=hello%20world",
        ),
        ("https://example.com/k\u00f6ln?q=\u00fc", "https://example.com/k%C3%B6ln?q=%C3%BC"),
        ("https://Example.com./a", "https://example.com/a"),
        ("https://user:Pw@Example.com:443/a", "https://user:Pw@example.com/a"),
        ("http://[2001:DB8::1]:80/a", "http://[2001:db8::1]/a"),
        ("http://[2001:db8::1]:8080/a", "http://[2001:db8::1]:8080/a"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://example.com/a?b=1#x?utm_source=y", "https://example.com/a?b=1"),
        ("https://example.com/a;param?x=1", "https://example.com/a;param?x=1"),
        ("mailto:Someone@Example.com", "mailto:Someone@Example.com"),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (None, ""),
        ("", ""),
        ("plain text", "plain text"),
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("Hel<b>lo</b> wor<i>ld</i>", "Hello world"),
        ("<p>one</p><p>two</p>", "one two"),
        ("line<br>break<br/>again<BR />x", "line break again x"),
        ("<ul><li>a</li><li>b</li></ul>", "a b"),
        ("a <a href='x'>link</a>, then", "a link, then"),
        ("<script>var x = '<p>no</p>';</script>kept", "kept"),
        ("<STYLE type='text/css'>p { color: red }</STYLE>kept", "kept"),
        ("x<script src='a.js'></script>y", "x y"),
        ("before<!-- a <b>comment</b> -->after", "before after"),
        ("open <!-- never closed", "open"),
        ("<![CDATA[inside]]>", "inside"),
        ("AT&amp;T &lt;3 &quot;q&quot; &#8364; &#x20AC; &euro; &hellip;", 'AT&T <3 "q" € € € …'),
        ("&lt;p&gt;escaped markup stays text&lt;/p&gt;", "<p>escaped markup stays text</p>"),
        ("a &nbsp; b\u00a0c", "a b c"),
        ("  many \n\t spaces\r\n here ", "many spaces here"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("x<y", "x<y"),
        ('<img alt="pic" src="a.png">caption', "caption"),
        ('<a href="x" title="1 > 0">t</a>', '0">t'),  # a ">" inside a quoted value ends the tag
        ("soft\u00adhyphen zero\u200bwidth \ufeffbom", "softhyphen zerowidth bom"),
        ("ZWNJ \u200c stays", "ZWNJ \u200c stays"),
        ("<svg><text>W</text></svg>logo", "logo"),
        ("<!DOCTYPE html><html><head><title>T</title></head><body><p>B</p></body></html>", "T B"),
        ("<div\nclass='x'\n>multi-line tag</div>", "multi-line tag"),
    ],
)
def test_plain_text(html, expected):
    assert plain_text(html) == expected


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>" * 20_000,
        "<script>x</scrip>" * 10_000,
        "<svg>" * 40_000,
        "<a " * 100_000,
        "<!" * 100_000,
        '<a href="' * 50_000,
        "<!--" * 50_000,
        "&amp" * 50_000,
    ],
    ids=lambda s: repr(s[:10]),
)
def test_plain_text_is_linear_on_hostile_markup(hostile):
    started = time.process_time()
    plain_text(hostile)
    assert time.process_time() - started < 1


def test_content_hash_ignores_case_and_whitespace():
    a = content_hash("Wagner  Convoy", "Trucks seen", "Body\ntext")
    assert a == content_hash("wagner convoy", "TRUCKS   seen", "body text")
    assert a != content_hash("wagner convoy", "trucks seen", "body text!")
    assert a != content_hash("wagner", "convoy trucks seen", "body text")  # fields stay apart
    assert len(a) == 40 and int(a, 16) >= 0


def _entry(index: int = 0, **kw: object) -> ParsedEntry:
    values: dict[str, object] = {
        "guid": None,
        "link": None,
        "title": None,
        "summary": None,
        "content": None,
        "published": None,
        "updated": None,
    }
    values.update(kw)
    return ParsedEntry(index=index, **values)  # type: ignore[arg-type]


def _articles(
    *entries: ParsedEntry, fetched: datetime = FETCHED, link: str | None = None
) -> list[Article]:
    return normalize_entries(FEED, ParsedFeed(title="f", entries=entries, link=link), fetched)


def test_summary_falls_back_to_content_and_content_to_summary():
    long_text = " ".join(f"word{i}" for i in range(300))
    only_content, only_summary = _articles(
        _entry(0, guid="a", title="A", content=f"<p>{long_text}</p>"),
        _entry(1, guid="b", title="B", summary="<p>short</p>"),
    )
    assert only_content.content == long_text
    assert long_text.startswith(only_content.summary[:-1])
    assert only_content.summary.endswith("…") and len(only_content.summary) <= 500
    assert len(only_content.summary) > 400
    assert (only_summary.summary, only_summary.content) == ("short", "short")


def test_summary_identical_to_content_counts_as_missing():
    text = "<p>" + "long content " * 100 + "</p>"
    (article,) = _articles(_entry(guid="a", title="A", summary=text, content=text))
    assert len(article.summary) <= 500 and len(article.content) > 1000


def test_title_falls_back_to_text():
    (article,) = _articles(_entry(guid="a", summary="<p>Only a summary here.</p>"))
    assert article.title == "Only a summary here."


@pytest.mark.parametrize(
    ("published", "updated", "expected"),
    [
        (
            datetime(2026, 4, 25, 9, tzinfo=UTC),
            datetime(2026, 4, 25, 10, tzinfo=UTC),
            datetime(2026, 4, 25, 9, tzinfo=UTC),
        ),
        (None, datetime(2026, 4, 25, 10, tzinfo=UTC), datetime(2026, 4, 25, 10, tzinfo=UTC)),
        (None, None, FETCHED),
        (datetime(2026, 4, 26, tzinfo=UTC), None, FETCHED),  # future: clamped
        (
            datetime(2026, 4, 25, 14, tzinfo=timezone(timedelta(hours=3))),
            None,
            datetime(2026, 4, 25, 11, tzinfo=UTC),
        ),
    ],
)
def test_published(published, updated, expected):
    (article,) = _articles(_entry(guid="g", title="t", published=published, updated=updated))
    assert article.published == expected
    assert article.published.tzinfo is UTC and article.fetched == FETCHED


def test_naive_fetched_time_is_utc():
    (article,) = _articles(_entry(guid="g", title="t"), fetched=datetime(2026, 4, 25, 12))
    assert article.fetched == FETCHED and article.published == FETCHED


@pytest.mark.parametrize(
    ("link", "url", "canonical"),
    [
        (
            "https://Example.com/a?utm_source=x#frag",
            "https://Example.com/a?utm_source=x#frag",
            "https://example.com/a",
        ),
        ("/news/1", "https://example.com/news/1", "https://example.com/news/1"),
        ("news/1", "https://example.com/news/1", "https://example.com/news/1"),
        ("//cdn.example.net/x", "https://cdn.example.net/x", "https://cdn.example.net/x"),
        (
            " https://example.com/padded ",
            "https://example.com/padded",
            "https://example.com/padded",
        ),
        ("http://[::1", "http://[::1", "http://[::1"),  # broken IPv6 literal: kept as is
        ("javascript:alert(1)", None, None),
        ("mailto:desk@example.com", None, None),
        ("tag:example.com,2026:1", None, None),
        ("ftp://example.com/file", None, None),
        (None, None, None),
        ("", None, None),
    ],
)
def test_urls(link, url, canonical):
    (article,) = _articles(_entry(guid="g", title="t", link=link))
    assert (article.url, article.canonical_url) == (url, canonical)


def test_guid_fallbacks():
    with_id, with_link, bare = _articles(
        _entry(0, guid=" id-1 ", title="a", link="https://example.com/1"),
        _entry(1, title="b", link="https://example.com/2?utm_source=x"),
        _entry(2, title="c", summary="text"),
    )
    assert with_id.guid == "id-1"
    assert with_link.guid == "https://example.com/2"
    assert bare.guid == bare.content_hash and len(bare.guid) == 40


def test_duplicate_guids_keep_the_first_entry():
    articles = _articles(
        _entry(0, guid="same", title="first"),
        _entry(1, guid="other", title="other"),
        _entry(2, guid="same", title="second"),
        _entry(3, title="x", link="https://example.com/x"),
        _entry(4, title="y", link="https://example.com/x#again"),  # same canonical url: guid
    )
    assert [(a.entry_index, a.title) for a in articles] == [(0, "first"), (1, "other"), (3, "x")]


def test_empty_entries_are_left_out():
    articles = _articles(
        _entry(0, guid="empty", content="<p> </p>"), _entry(1, guid="x", title="x")
    )
    assert [a.guid for a in articles] == ["x"]


def test_article_text_is_plain():
    (article,) = _articles(
        _entry(
            guid="g",
            title="<b>Bold</b> &amp; brave",
            summary="<p>Sum&shy;mary</p>",
            content="<div>Con<i>tent</i><script>x()</script></div>",
        )
    )
    assert (article.title, article.summary, article.content) == (
        "Bold & brave",
        "Summary",
        "Content",
    )
    assert article.content_hash == content_hash("Bold & brave", "Summary", "Content")


def test_process_document_result_is_small_and_picklable():
    content = (DATA / "rss_relative.xml").read_bytes()
    result = process_document(
        FEED, content, url=FEED, content_type="application/rss+xml", headers={}, fetched=FETCHED
    )
    assert isinstance(result, ProcessedFeed)
    assert (result.title, result.ttl_seconds, result.bozo_reason) == (
        "Example & Co. News",
        1800.0,
        None,
    )
    assert pickle.loads(pickle.dumps(result)) == result
    with pytest.raises(ParseError) as info:
        process_document(FEED, b"", url=FEED, content_type=None, fetched=FETCHED)
    assert pickle.loads(pickle.dumps(info.value)).args == ("empty body",)


def test_process_document_runs_in_a_process_pool():
    content = (DATA / "atom_xmlbase.xml").read_bytes()
    process = partial(
        process_document, FEED, url=FEED, content_type="application/atom+xml", fetched=FETCHED
    )
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(process, content).result(timeout=60)
        failure = pool.submit(process, b"<html></html>")
        with pytest.raises(ParseError, match="HTML document"):
            failure.result(timeout=60)
    assert remote == process(content)


def test_normalize_is_deterministic():
    content = (DATA / "jsonfeed_11.json").read_bytes()
    process = partial(process_document, FEED, url=FEED, content_type=None, fetched=FETCHED)
    first, again = process(content), process(content)
    assert first == again
    assert [a.content_hash for a in first.articles] == [a.content_hash for a in again.articles]


def test_process_document_can_prepare_the_clustering_features():
    content = (DATA / "rss_relative.xml").read_bytes()
    kwargs = {"url": FEED, "content_type": "application/rss+xml", "fetched": FETCHED}
    result = process_document(FEED, content, features=True, **kwargs)
    assert result.articles
    for a in result.articles:
        assert a.features == prepare(a.title, a.summary, a.content)
    remote = pickle.loads(pickle.dumps(result))  # as the pool worker hands it back
    assert [a.features for a in remote.articles] == [a.features for a in result.articles]
    bare = process_document(FEED, content, **kwargs)
    assert all(a.features is None for a in bare.articles)  # not by default: see the docstring
    assert bare.articles == result.articles  # the features are no part of an article's identity
