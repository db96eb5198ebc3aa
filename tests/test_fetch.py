"""The fetch stage against a real HTTP server on 127.0.0.1 (tests/feedserver.py)."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import http.server
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest

from monitor.discover import find_feed_links, looks_like_html
from monitor.fetch import (
    Fetcher,
    format_duration,
    format_size,
    parse_max_age,
    parse_retry_after,
)
from monitor.model import FetchResult
from tests import alertpeers
from tests.conftest import FEEDS_DIR
from tests.feedserver import FeedServer, RecordedRequest, Reply, feed_server_fixture

feed_server = feed_server_fixture()
tls_files = alertpeers.tls_files

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><title>One</title><link>https://example.org/1</link></item></channel></rss>"""
REAL_FEED = "fast-news-reader/tests/fixtures/bbc.xml"
MB = 1024 * 1024


def fetch(
    url: str, *, etag: str | None = None, last_modified: str | None = None, **opts: Any
) -> FetchResult:
    """One fetch with a fresh Fetcher (``opts`` are Fetcher's constructor arguments)."""

    async def go() -> FetchResult:
        async with Fetcher(**opts) as fetcher:
            return await fetcher.fetch(url, etag=etag, last_modified=last_modified)

    return asyncio.run(go())


def fetch_many(urls: list[str], **opts: Any) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with Fetcher(**opts) as fetcher:
            return list(await asyncio.gather(*(fetcher.fetch(u) for u in urls)))

    return asyncio.run(go())


def real_feed() -> str:
    assert (FEEDS_DIR / REAL_FEED).is_file()
    return REAL_FEED


def gzip_files() -> list[str]:
    """Corpus files stored gzip-compressed (README: there are two)."""
    found = []
    for line in (FEEDS_DIR / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        relpath = line.split("\t", 1)[0]
        with (FEEDS_DIR / relpath).open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                found.append(relpath)
    return found


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def gate(server: FeedServer, path: str, count: int) -> Any:
    """A handler that holds requests until ``count`` are in flight at once on ``path``.

    It makes the server observe the client's full parallelism without relying on
    timing: the first ``count`` requests meet, then the gate stays open. The timeout
    only matters when the client sends fewer at once (a failing test).
    """
    arrived = threading.Condition()
    opened = threading.Event()

    def handle(request: RecordedRequest) -> Reply:
        with arrived:
            arrived.notify_all()
            arrived.wait_for(lambda: opened.is_set() or server.in_flight(path) >= count, timeout=10)
            opened.set()
        return Reply(body=RSS, headers={"Content-Type": "application/rss+xml"})

    return handle


# -- serving real files, conditional GET -----------------------------------------------


def test_real_file_then_conditional_get_gives_304(feed_server: FeedServer) -> None:
    relpath = real_feed()
    url = feed_server.file_url(relpath)
    first = fetch(url, user_agent="feed-monitor-test/1")
    assert first.status == 200 and first.error is None
    assert first.content == (FEEDS_DIR / relpath).read_bytes()
    assert first.content_type == "text/xml"
    assert first.etag and first.last_modified
    assert first.final_url == url and first.permanent_redirect is None

    second = fetch(url, etag=first.etag, last_modified=first.last_modified)
    assert second.status == 304 and second.not_modified
    assert second.content is None and second.error is None
    assert (second.etag, second.last_modified) == (first.etag, first.last_modified)

    sent = feed_server.requests(f"/files/{relpath}")
    assert sent[0].headers["user-agent"] == "feed-monitor-test/1"
    assert "if-none-match" not in sent[0].headers
    assert sent[1].headers["if-none-match"] == first.etag
    assert sent[1].headers["if-modified-since"] == first.last_modified


def test_304s_and_small_error_bodies_keep_the_connection(feed_server: FeedServer) -> None:
    """A re-poll is mostly 304s: each must hand its connection back to the pool."""
    url = feed_server.file_url(real_feed())
    feed_server.route("/gone", status=404, body=b"no such feed")
    first = fetch(url)

    async def go() -> list[FetchResult]:
        async with Fetcher(per_host=1) as fetcher:
            results = []
            for _ in range(5):
                results.append(
                    await fetcher.fetch(url, etag=first.etag, last_modified=first.last_modified)
                )
                results.append(await fetcher.fetch(feed_server.url("/gone")))
            return results

    opened = feed_server.connections_opened
    results = asyncio.run(go())
    assert [r.status for r in results] == [304, 404] * 5
    assert feed_server.connections_opened - opened == 1


def test_if_modified_since_alone_gives_304(feed_server: FeedServer) -> None:
    url = feed_server.file_url(real_feed())
    first = fetch(url)
    again = fetch(url, last_modified=first.last_modified)
    assert again.not_modified and again.status == 304


def test_changed_etag_gives_full_body(feed_server: FeedServer) -> None:
    url = feed_server.file_url(real_feed())
    result = fetch(url, etag='"stale"')
    assert result.status == 200 and result.content and not result.not_modified


@pytest.mark.parametrize("relpath", gzip_files())
def test_corpus_gzip_files_are_decoded(feed_server: FeedServer, relpath: str) -> None:
    result = fetch(feed_server.file_url(relpath))
    assert result.status == 200, result.error
    assert result.headers["content-encoding"] == "gzip"
    assert result.content == gzip.decompress((FEEDS_DIR / relpath).read_bytes())


def test_corpus_has_the_two_gzip_files() -> None:
    assert len(gzip_files()) == 2


def test_many_real_files_concurrently(feed_server: FeedServer) -> None:
    skip = set(gzip_files())
    relpaths = sorted(p.relative_to(FEEDS_DIR).as_posix() for p in FEEDS_DIR.glob("*/**/*.xml"))
    relpaths = [p for p in relpaths if p not in skip][:: max(1, len(relpaths) // 60)]
    results = fetch_many([feed_server.file_url(p) for p in relpaths], concurrency=8, per_host=8)
    for relpath, result in zip(relpaths, results, strict=True):
        assert result.status == 200, (relpath, result.error)
        assert result.content == (FEEDS_DIR / relpath).read_bytes(), relpath


# -- content codings and size limits ---------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("br", brotli.compress),
        ("identity", lambda b: b),
        ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "br", "identity", "gzip-then-br"],
)
def test_content_codings_are_decoded(feed_server: FeedServer, coding: str, encode: Any) -> None:
    body = RSS * 500
    feed_server.route("/enc", body=encode(body), headers={"Content-Encoding": coding})
    result = fetch(feed_server.url("/enc"))
    assert result.error is None and result.content == body


def test_multi_member_gzip_is_read_whole(feed_server: FeedServer) -> None:
    feed_server.route(
        "/two",
        body=gzip.compress(b"first ") + gzip.compress(b"second"),
        headers={"Content-Encoding": "gzip"},
    )
    assert fetch(feed_server.url("/two")).content == b"first second"


@pytest.mark.parametrize(
    ("coding", "body", "error"),
    [
        ("zstd", b"x", "unsupported Content-Encoding: zstd"),
        ("gzip", b"not gzip at all", "invalid gzip body"),
        ("br", b"\xff" * 20, "invalid br body"),
    ],
)
def test_undecodable_bodies(feed_server: FeedServer, coding: str, body: bytes, error: str) -> None:
    feed_server.route("/bad", body=body, headers={"Content-Encoding": coding})
    result = fetch(feed_server.url("/bad"))
    assert result.content is None and result.error is not None
    assert result.error.startswith(error)


def gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(MB)
    parts = [compressor.compress(zeros) for _ in range(inflated // MB)]
    return b"".join(parts) + compressor.flush()


def test_gzip_bomb_stops_at_the_limit_without_inflating(feed_server: FeedServer) -> None:
    bomb = gzip_bomb(200 * MB)
    assert len(bomb) < 300_000
    feed_server.route("/bomb", body=bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        result = fetch(feed_server.url("/bomb"), max_bytes=10 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is None and result.content is None
    assert result.error == "response larger than 10MB"
    assert peak < 50 * MB  # the limit plus slack; inflating the bomb would take 200 MB


def test_brotli_bomb_stops_at_the_limit(feed_server: FeedServer) -> None:
    compressor = brotli.Compressor(quality=1)
    bomb = b"".join(compressor.process(bytes(MB)) for _ in range(50)) + compressor.finish()
    feed_server.route("/brbomb", body=bomb, headers={"Content-Encoding": "br"})
    result = fetch(feed_server.url("/brbomb"), max_bytes=1 * MB)
    assert result.error == "response larger than 1MB"


def test_endless_body_stops_at_max_bytes(feed_server: FeedServer) -> None:
    feed_server.route("/endless", endless=True)
    result = fetch(feed_server.url("/endless"), max_bytes=2 * MB)
    assert result.status is None and result.error == "response larger than 2MB"


def test_declared_length_over_the_limit_is_refused_before_reading(
    feed_server: FeedServer,
) -> None:
    feed_server.route("/big", body=b"x" * 2000)
    assert fetch(feed_server.url("/big"), max_bytes=1500).error == "response larger than 1500 bytes"


def test_body_exactly_at_the_limit_is_accepted(feed_server: FeedServer) -> None:
    feed_server.route(
        "/exact", body=gzip.compress(b"y" * 1000), headers={"Content-Encoding": "gzip"}
    )
    assert fetch(feed_server.url("/exact"), max_bytes=1000).content == b"y" * 1000


# -- time limits and cancellation -------------------------------------------------------


def test_trickling_server_is_cut_off_by_the_whole_request_timeout(
    feed_server: FeedServer,
) -> None:
    feed_server.route("/slow", body=RSS, trickle=1)  # 1 byte/s: every read succeeds
    result = fetch(feed_server.url("/slow"), timeout=1.0)
    assert result.status is None and result.content is None
    assert result.error == "timeout after 1s"


def test_handler_that_never_answers_times_out(feed_server: FeedServer) -> None:
    feed_server.route("/hang", hang=True)
    assert fetch(feed_server.url("/hang"), timeout=0.5).error == "timeout after 500ms"


def test_connection_that_never_answers_times_out(silent_listener: int) -> None:
    result = fetch(f"http://127.0.0.1:{silent_listener}/feed", timeout=0.5)
    assert result.status is None and result.error == "timeout after 500ms"


def test_cancellation_releases_the_slots(feed_server: FeedServer) -> None:
    feed_server.route("/hang", hang=True)
    feed_server.route("/ok", body=RSS)

    async def go() -> FetchResult:
        async with Fetcher(concurrency=1, per_host=1, timeout=30) as fetcher:
            task = asyncio.create_task(fetcher.fetch(feed_server.url("/hang")))
            while feed_server.in_flight("/hang") == 0:
                await asyncio.sleep(0.01)  # wait for the request to reach the server
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await fetcher.fetch(feed_server.url("/ok"))

    assert asyncio.run(go()).content == RSS


# -- redirects ---------------------------------------------------------------------------


def test_permanent_redirect_is_recorded(feed_server: FeedServer) -> None:
    feed_server.route("/old", status=301, redirect_to="/new")  # relative Location
    feed_server.route("/new", body=RSS)
    result = fetch(feed_server.url("/old"))
    assert result.status == 200 and result.content == RSS
    assert result.url == feed_server.url("/old")
    assert result.final_url == feed_server.url("/new")
    assert result.permanent_redirect == feed_server.url("/new")


@pytest.mark.parametrize("status", [302, 303, 307])
def test_temporary_redirect_is_followed_not_recorded(feed_server: FeedServer, status: int) -> None:
    feed_server.route("/tmp", status=status, redirect_to=feed_server.url("/new"))
    feed_server.route("/new", body=RSS)
    result = fetch(feed_server.url("/tmp"))
    assert result.content == RSS and result.final_url == feed_server.url("/new")
    assert result.permanent_redirect is None


def test_permanent_then_temporary_records_the_permanent_target(feed_server: FeedServer) -> None:
    feed_server.route("/a", status=308, redirect_to="/b")
    feed_server.route("/b", status=302, redirect_to="/c")
    feed_server.route("/c", body=RSS)
    result = fetch(feed_server.url("/a"))
    assert result.permanent_redirect == feed_server.url("/b")
    assert result.final_url == feed_server.url("/c")


def test_temporary_then_permanent_records_nothing(feed_server: FeedServer) -> None:
    feed_server.route("/a", status=302, redirect_to="/b")
    feed_server.route("/b", status=301, redirect_to="/c")
    feed_server.route("/c", body=RSS)
    assert fetch(feed_server.url("/a")).permanent_redirect is None


def test_redirect_loop(feed_server: FeedServer) -> None:
    feed_server.route("/a", status=302, redirect_to="/b")
    feed_server.route("/b", status=301, redirect_to="/a")
    result = fetch(feed_server.url("/a"))
    assert result.status is None and result.error == "redirect loop"
    assert feed_server.hits("/a") == 1 and feed_server.hits("/b") == 1


def test_five_redirects_are_followed_six_are_too_many(feed_server: FeedServer) -> None:
    for i in range(6):
        feed_server.route(f"/r{i}", status=302, redirect_to=f"/r{i + 1}")
    feed_server.route("/r6", body=RSS)
    assert fetch(feed_server.url("/r1")).content == RSS
    assert fetch(feed_server.url("/r0")).error == "too many redirects"


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:
    feed_server.route("/ftp", status=302, redirect_to="ftp://example.org/feed")
    assert fetch(feed_server.url("/ftp")).error == "unsupported URL: ftp://example.org/feed"


# -- HTTP errors and hints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "error", "gone", "retry_after"),
    [
        (404, {}, "HTTP 404 Not Found", False, None),
        (410, {}, "HTTP 410 Gone", True, None),
        (500, {}, "HTTP 500 Internal Server Error", False, None),
        (403, {"Retry-After": "60"}, "HTTP 403 Forbidden", False, None),
        (429, {"Retry-After": "120"}, "HTTP 429 Too Many Requests", False, 120.0),
        (
            503,
            {
                "Date": "Sun, 06 Nov 1994 08:49:37 GMT",
                "Retry-After": "Sun, 06 Nov 1994 08:51:37 GMT",
            },
            "HTTP 503 Service Unavailable",
            False,
            120.0,
        ),
        (429, {"Retry-After": "soon"}, "HTTP 429 Too Many Requests", False, None),
        (599, {}, "HTTP 599 Odd", False, None),
    ],
)
def test_http_errors(
    feed_server: FeedServer,
    status: int,
    headers: dict[str, str],
    error: str,
    gone: bool,
    retry_after: float | None,
) -> None:
    reason = "Odd" if status == 599 else None
    feed_server.route(
        "/err",
        handler=lambda r: Reply(status=status, headers=headers, body=b"nope", reason=reason),
    )
    result = fetch(feed_server.url("/err"))
    assert (result.status, result.error, result.gone) == (status, error, gone)
    assert result.retry_after == retry_after
    assert result.content is None


def test_retry_after_date_without_server_date_uses_the_clock() -> None:
    in_two_minutes = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 120, UTC)
    when = in_two_minutes.strftime("%a, %d %b %Y %H:%M:%S GMT")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": when})  # and no Date header

    result = fetch("http://feeds.test/rss", transport=httpx.MockTransport(answer))
    assert result.retry_after is not None and 100 <= result.retry_after <= 121


def test_failing_test_handler_gives_500(feed_server: FeedServer) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise KeyError("oops")

    feed_server.route("/bug", handler=broken)
    assert fetch(feed_server.url("/bug")).status == 500


def test_error_body_is_not_read(feed_server: FeedServer) -> None:
    feed_server.route("/broken", handler=lambda r: Reply(status=500, endless=True))
    result = fetch(feed_server.url("/broken"), max_bytes=1000)
    assert result.error == "HTTP 500 Internal Server Error"


def test_cache_control_max_age(feed_server: FeedServer) -> None:
    feed_server.route("/cc", body=RSS, headers={"Cache-Control": "public, max-age=900"})
    assert fetch(feed_server.url("/cc")).max_age == 900.0


# -- network failures ------------------------------------------------------------------------


def test_refused_connection() -> None:
    result = fetch(f"http://127.0.0.1:{closed_port()}/feed")
    assert result.status is None and result.error == "connection refused"


def test_dns_failure() -> None:
    result = fetch("http://feeds.example.invalid/rss")
    assert result.status is None
    assert result.error == "DNS lookup failed for host feeds.example.invalid"


def test_tls_error(feed_server: FeedServer) -> None:
    result = fetch(feed_server.url("/files/x").replace("http://", "https://"), timeout=5)
    assert result.status is None and result.error is not None
    assert result.error.startswith("TLS error: ")


def test_unsupported_url() -> None:
    assert fetch("ftp://example.org/feed").error == "unsupported URL: ftp://example.org/feed"


# -- limits ----------------------------------------------------------------------------------


def test_per_host_limit(feed_server: FeedServer) -> None:
    feed_server.route("/feed", handler=gate(feed_server, "/feed", 2))
    urls = [feed_server.url(f"/feed?n={i}") for i in range(6)]
    results = fetch_many(urls, concurrency=10, per_host=2)
    assert all(r.content == RSS for r in results)
    assert feed_server.peak_concurrency("/feed") == 2


def test_concurrency_limit(feed_server: FeedServer) -> None:
    feed_server.route("/feed", handler=gate(feed_server, "/feed", 3))
    urls = [feed_server.url(f"/feed?n={i}") for i in range(8)]
    results = fetch_many(urls, concurrency=3, per_host=10)
    assert all(r.content == RSS for r in results)
    assert feed_server.peak_concurrency("/feed") == 3


def test_per_host_limit_is_per_host_and_port() -> None:
    """With per_host=1, two servers (two ports) are still served at the same time."""
    with FeedServer(None) as one, FeedServer(None) as two:
        both = threading.Barrier(2, timeout=5)
        seen_together = []

        def meet(request: RecordedRequest) -> Reply:
            try:
                both.wait()
                seen_together.append(True)
            except threading.BrokenBarrierError:
                seen_together.append(False)
            return Reply(body=RSS)

        one.route("/f", handler=meet)
        two.route("/f", handler=meet)
        results = fetch_many([one.url("/f"), two.url("/f")], per_host=1)
    assert [r.content for r in results] == [RSS, RSS]
    assert seen_together == [True, True]


# -- feed discovery -------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html><html><head><title>News</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="text/html" href="/other">
<link rel="alternate" type="application/rss+xml" title="RSS" href="feeds/main.xml">
<link rel="alternate" type="application/atom+xml" href="/atom.xml">
</head><body><p>hello</p></body></html>"""


def test_discovery_follows_the_first_feed_link(feed_server: FeedServer) -> None:
    feed_server.route("/site/", body=PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    feed_server.route("/site/feeds/main.xml", body=RSS, headers={"Content-Type": "text/xml"})
    result = fetch(feed_server.url("/site/"), etag='"e1"')
    assert result.status == 200 and result.content == RSS
    assert result.url == feed_server.url("/site/feeds/main.xml")
    assert result.discovered_from == feed_server.url("/site/")
    assert feed_server.hits("/atom.xml") == 0
    assert feed_server.requests("/site/feeds/main.xml")[0].headers["if-none-match"] == '"e1"'


def test_discovery_sniffs_html_served_with_a_wrong_type(feed_server: FeedServer) -> None:
    feed_server.route("/page", body=PAGE, headers={"Content-Type": "application/octet-stream"})
    feed_server.route("/feeds/main.xml", body=RSS)
    assert fetch(feed_server.url("/page")).discovered_from == feed_server.url("/page")


def test_discovery_happens_once(feed_server: FeedServer) -> None:
    page2 = PAGE.replace(b"feeds/main.xml", b"/elsewhere.xml")
    feed_server.route("/p1", body=PAGE, headers={"Content-Type": "text/html"})
    feed_server.route("/feeds/main.xml", body=page2, headers={"Content-Type": "text/html"})
    result = fetch(feed_server.url("/p1"))
    assert result.content == page2 and result.discovered_from == feed_server.url("/p1")
    assert feed_server.hits("/elsewhere.xml") == 0


def test_page_without_feed_links_is_returned_as_is(feed_server: FeedServer) -> None:
    html = (FEEDS_DIR / "node-feedparser/test/feeds/notafeed.html").read_bytes()
    feed_server.route("/nf", body=html, headers={"Content-Type": "text/html"})
    result = fetch(feed_server.url("/nf"))
    assert result.status == 200 and result.content == html and result.discovered_from is None


def test_feed_mislabelled_as_html_is_not_a_page(feed_server: FeedServer) -> None:
    body = RSS.replace(
        b"</channel>", b'<link rel="alternate" type="application/rss+xml" href="/x"/></channel>'
    )
    feed_server.route("/mis", body=body, headers={"Content-Type": "text/html"})
    result = fetch(feed_server.url("/mis"))
    assert result.content == body and result.discovered_from is None


def test_discovered_feed_failure_is_reported(feed_server: FeedServer) -> None:
    feed_server.route("/page", body=PAGE, headers={"Content-Type": "text/html"})
    result = fetch(feed_server.url("/page"))  # /feeds/main.xml is not routed: 404
    assert result.error == "HTTP 404 Not Found"
    assert result.url == feed_server.url("/feeds/main.xml")
    assert result.discovered_from == feed_server.url("/page")


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (PAGE, ["http://h/site/feeds/main.xml", "http://h/atom.xml"]),
        (
            '<link rel="Alternate" type="Application/Feed+JSON" href="f.json">',
            ["http://h/site/f.json"],
        ),
        (
            '<link rel="alternate feed" type="application/rss+xml; charset=utf-8" href="/r">',
            ["http://h/r"],
        ),
        (
            '<base href="https://cdn.example/x/">'
            "<link rel=alternate type=application/atom+xml href=a>",
            ["https://cdn.example/x/a"],
        ),
        ('<link rel="alternate" type="application/rss+xml" href="">', []),
        ('<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">', []),
        (
            '<link rel="alternate" type="application/rss+xml" href="/r">' * 2,
            ["http://h/r"],
        ),
        ('<link rel="stylesheet" type="application/rss+xml" href="/r">', []),
        ("<![bogus <link rel=alternate type=application/rss+xml href=/r>", []),
        ("", []),
    ],
)
def test_find_feed_links(html: str | bytes, expected: list[str]) -> None:
    assert find_feed_links(html, "http://h/site/") == expected


def test_find_feed_links_bounds_its_work() -> None:
    many = b'<link rel="alternate" type="application/rss+xml" href="/f%d">'
    page = b"".join(many % i for i in range(1000))
    assert len(find_feed_links(page, "http://h/")) == 20
    late = b"<head>" + b" " * 300_000 + many % 1
    assert find_feed_links(late, "http://h/") == []
    in_body = b"<head></head><body>" + many % 1
    assert find_feed_links(in_body, "http://h/") == []


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html", b"<p>hi", True),
        ("text/html; charset=utf-8", b"\xef\xbb\xbf  <?xml version='1.0'?><rss/>", False),
        ("application/octet-stream", b"\n<!DOCTYPE HTML><html>", True),
        ("text/xml", b"<html><head>", True),
        ("text/html", b'{"version": "https://jsonfeed.org/version/1.1"}', False),
        (None, b"<feed xmlns='http://www.w3.org/2005/Atom'/>", False),
        ("application/xhtml+xml", b"<p/>", True),
        ("text/plain", b"hello", False),
    ],
)
def test_looks_like_html(content_type: str | None, body: bytes, expected: bool) -> None:
    assert looks_like_html(content_type, body) is expected


# -- pure helpers ----------------------------------------------------------------------------------

NOW = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 06 Nov 1994 08:51:37 GMT", 120.0),
        ("Sun, 06 Nov 1994 08:00:00 GMT", 0.0),  # in the past: retry now
        ("Sunday, 06-Nov-94 08:50:37 GMT", 60.0),  # RFC 850 form
        ("-5", None),
        ("1.5", None),
        ("later", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=300", 300.0),
        ("public, MAX-AGE=60, must-revalidate", 60.0),
        ('max-age="30"', 30.0),
        ("s-maxage=10", None),
        ("max-age=soon", None),
        ("no-cache", None),
        (None, None),
    ],
)
def test_parse_max_age(value: str | None, expected: float | None) -> None:
    assert parse_max_age(value) == expected


@pytest.mark.parametrize(
    ("seconds", "text"), [(30.0, "30s"), (1.0, "1s"), (0.5, "500ms"), (90.0, "90s"), (2.5, "2.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (10 * MB, "10MB"),
        (10_000_000, "10MB"),
        (512 * 1024, "512KB"),
        (1000, "1KB"),
        (999, "999 bytes"),
        (2 * 1024**3, "2GB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_fetcher_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Fetcher(concurrency=0)


def test_fetcher_needs_async_with() -> None:
    async def go() -> None:
        await Fetcher().fetch("http://127.0.0.1:1/")

    with pytest.raises(RuntimeError):
        asyncio.run(go())


def test_transport_can_be_swapped() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=RSS, headers={"ETag": '"v1"'})

    result = fetch("http://feeds.test/rss", transport=httpx.MockTransport(answer))
    assert result.content == RSS and result.etag == '"v1"'


# -- the test server itself ------------------------------------------------------------


def test_copies_serve_the_same_bytes(feed_server: FeedServer) -> None:
    relpath = real_feed()
    urls = feed_server.copy_urls([relpath, "fast-news-reader/tests"], 3)
    assert urls[0].endswith(f"/copies/0/{relpath}") and len(set(urls)) == 3
    result = fetch(urls[2])
    assert result.content == (FEEDS_DIR / relpath).read_bytes()
    assert fetch(urls[1]).status == 404  # a directory is not served


def test_server_refuses_paths_outside_its_root(feed_server: FeedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", feed_server.port)
    conn.request("GET", "/files/../conftest.py")
    assert conn.getresponse().status == 404
    conn.close()


def test_server_records_request_bodies(feed_server: FeedServer) -> None:
    feed_server.route("/hook", status=204)
    httpx.post(feed_server.url("/hook"), content=b'{"a": 1}', headers={"X-Test": "yes"})
    (seen,) = feed_server.requests("/hook")
    assert (seen.method, seen.body, seen.headers["x-test"]) == ("POST", b'{"a": 1}', "yes")


def test_static_route_with_validators_answers_304(feed_server: FeedServer) -> None:
    feed_server.route("/v", body=RSS, headers={"ETag": '"abc"'})
    assert fetch(feed_server.url("/v"), etag='"abc"').not_modified


def test_server_stops_promptly_with_a_hanging_handler() -> None:
    outcome: list[str] = []
    server = FeedServer(None).start()
    server.route("/hang", hang=True)

    def client() -> None:
        try:
            httpx.get(server.url("/hang"), timeout=60)
            outcome.append("answered")
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=client)
    thread.start()
    while server.in_flight("/hang") == 0:
        thread.join(0.01)
    server.stop()  # must not wait for the handler
    thread.join()
    assert outcome == ["RemoteProtocolError"]


def test_rewritten_file_is_served_fresh(tmp_path: Path) -> None:
    feed = tmp_path / "my feed.xml"
    feed.write_bytes(RSS)
    with FeedServer(tmp_path) as server:
        first = fetch(server.file_url("my feed.xml"))
        feed.write_bytes(RSS + b"<!-- more -->")
        second = fetch(server.file_url("my feed.xml"), etag=first.etag)
    assert first.content == RSS
    assert second.status == 200 and second.content == RSS + b"<!-- more -->"
    assert second.etag != first.etag


def test_server_serves_types_by_extension(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "b.rss.gz").write_bytes(gzip.compress(RSS))
    with FeedServer(tmp_path) as server:
        json_result = fetch(server.file_url("a.json"))
        gz_result = fetch(server.file_url("b.rss.gz"))
    assert json_result.content_type == "application/feed+json"
    assert gz_result.content == RSS and gz_result.content_type == "text/xml"


# -- https: TLS is set up on the first https URL, and certificates are still verified ----


@pytest.fixture
def https_feed(tls_files: alertpeers.TlsFiles) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate, serving one feed."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(RSS)))
            self.end_headers()
            self.wfile.write(RSS)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls_files.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()


def test_https_certificates_are_verified(https_feed: str) -> None:
    result = fetch(https_feed)
    assert result.content is None and result.error is not None
    assert "certificate" in result.error.lower()


def test_https_with_a_trusted_certificate(
    https_feed: str, tls_files: alertpeers.TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    result = fetch(https_feed)
    assert result.error is None and result.content == RSS


def test_http_and_https_feeds_in_one_fetcher(
    feed_server: FeedServer,
    https_feed: str,
    tls_files: alertpeers.TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    results = fetch_many([feed_server.file_url(real_feed()), https_feed] * 2)
    assert [r.status for r in results] == [200] * 4 and all(r.error is None for r in results)
