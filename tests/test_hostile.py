"""Hostile input: one `monitor poll` over every hostile endpoint plus the whole corpus.

A local server (``tests.feedserver``) answers with a gzip bomb, an endless body, a
1 byte/s trickle, a connection that never answers, redirect loops, entity bombs, XXE
references to a local file and to a URL, random binary, an empty 200, an HTML page
without a feed, invalid UTF-8 under a UTF-8 declaration and 404/410/429/500, beside
every file of ``../shared/data/feeds``. Issue 6 asks that the poll

* exits 0, within (slow endpoints / per_host, rounded up) x timeout plus the time the
  same poll takes without the hostile endpoints, and stays under 600 MB;
* stores the readable feeds' entries and records a precise ``last_error`` per broken feed;
* never stores a local file's content or an expanded entity.

The polls (corpus alone, corpus plus hostile endpoints, corpus alone again) run once per
module, each against its own fresh SQLite database; the tests read their results. Broken
configurations are at the end: exit 2 with line and column, never a traceback.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests import hostile
from tests.conftest import FEEDS_DIR
from tests.feedserver import FeedServer

pytestmark = pytest.mark.timeout(900)

TIMEOUT_SECONDS = 2
PER_HOST = 2
MEMORY_LIMIT = 600 * hostile.MB
XML = {"Content-Type": "application/rss+xml"}
P = "/hostile"


@dataclass(frozen=True)
class Endpoint:
    """A hostile route and what `monitor feeds --json` must show for it afterwards.

    ``error``: a regular expression the whole ``last_error`` must match; ``None`` means the
    document is readable (its entries are stored, no error) or, when ``refusal`` is given,
    refused with an error matching it (a DTD trick may be read harmlessly or turned away).
    ``slow``: it never finishes by itself, so it holds a per-host slot until the timeout
    (or the byte cap).
    """

    path: str
    route: dict[str, Any]  # FeedServer.route keywords
    error: str | None
    status: int | None = 200
    slow: bool = False
    refusal: str | None = None


DTD_REFUSAL = r"not a feed: .*(entit|DTD).*"


def _redirect_chain(server: FeedServer, hops: int) -> None:
    for i in range(hops):
        server.route(f"{P}/chain/{i}", redirect_to=f"{P}/chain/{i + 1}")
    server.route(f"{P}/chain/{hops}", body=hostile.rss_document("End", []), headers=XML)


def endpoints(url: Callable[[str], str], secret: Path, bomb: bytes) -> list[Endpoint]:
    """Every hostile endpoint; ``url`` makes a path absolute on the serving host."""
    probe = url(f"{P}/xxe-probe")
    return [
        Endpoint(
            f"{P}/gzip-bomb",
            {"body": bomb, "headers": {**XML, "Content-Encoding": "gzip"}},
            r"response larger than 10MB",
            status=None,
        ),
        # the same bytes without the label: the parse stage finds the gzip magic itself
        Endpoint(
            f"{P}/gzip-bomb-unlabelled",
            {"body": bomb, "headers": XML},
            r"not a feed: gzip data inflates past \d+ bytes",
        ),
        # unlabelled, and past max_feed_bytes (10 MB) though far from a bomb: refused too
        Endpoint(
            f"{P}/gzip-unlabelled-12mb",
            {"body": hostile.gzip_bomb(12 * hostile.MB), "headers": XML},
            r"not a feed: gzip data inflates past 10485760 bytes",
        ),
        Endpoint(
            f"{P}/endless",
            {"endless": True, "headers": XML},
            r"response larger than 10MB",
            status=None,
            slow=True,
        ),
        Endpoint(
            f"{P}/trickle",
            {
                "trickle": 1.0,
                "body": hostile.rss_document(
                    "Slow", [hostile.Entry("1", "t", "https://slow.example/1")]
                ),
                "headers": XML,
            },
            rf"timeout after {TIMEOUT_SECONDS}s",
            status=None,
            slow=True,
        ),
        Endpoint(
            f"{P}/hang",
            {"hang": True},
            rf"timeout after {TIMEOUT_SECONDS}s",
            status=None,
            slow=True,
        ),
        Endpoint(f"{P}/loop-a", {"redirect_to": f"{P}/loop-b"}, r"redirect loop", status=None),
        Endpoint(f"{P}/loop-b", {"redirect_to": f"{P}/loop-a"}, r"redirect loop", status=None),
        Endpoint(
            f"{P}/loop-self",
            {"redirect_to": f"{P}/loop-self"},
            r"redirect loop",
            status=None,
        ),
        Endpoint(f"{P}/chain/0", {}, r"too many redirects", status=None),  # routed below
        # entity bombs and external entities: never expanded (the entry is stored with the
        # reference left as text) or refused, saying why
        Endpoint(
            f"{P}/laughs",
            {"body": hostile.billion_laughs(), "headers": XML},
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/laughs-utf16",
            {
                "body": hostile.billion_laughs("laughs-utf16", encoding="utf-16"),
                "headers": XML,
            },
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/quadratic",
            {"body": hostile.quadratic_blowup(), "headers": XML},
            r"not a feed: internal entities would expand by \d+ bytes \(limit \d+\)",
        ),
        Endpoint(
            f"{P}/xxe-file",
            {"body": hostile.xxe_document("xxe-file", secret.as_uri()), "headers": XML},
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/xxe-param",
            {
                "body": hostile.xxe_parameter_document("xxe-param", secret.as_uri()),
                "headers": XML,
            },
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/xxe-url",
            {"body": hostile.xxe_document("xxe-url", probe), "headers": XML},
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/xxe-param-url",
            {
                "body": hostile.xxe_parameter_document("xxe-param-url", probe),
                "headers": XML,
            },
            None,
            refusal=DTD_REFUSAL,
        ),
        Endpoint(
            f"{P}/binary",
            {"body": hostile.random_binary(), "headers": XML},
            r"not a feed: binary data",
        ),
        Endpoint(f"{P}/empty", {"body": b"", "headers": XML}, r"empty body"),
        Endpoint(
            f"{P}/html",
            {"body": hostile.html_without_feed(), "headers": {"Content-Type": "text/html"}},
            r"not a feed: HTML document",
        ),
        Endpoint(f"{P}/bad-utf8", {"body": hostile.invalid_utf8_feed(), "headers": XML}, None),
        Endpoint(f"{P}/404", {"status": 404}, r"HTTP 404 Not Found", status=404),
        Endpoint(f"{P}/410", {"status": 410}, r"HTTP 410 Gone", status=410),
        Endpoint(
            f"{P}/429",
            {"status": 429, "headers": {"Retry-After": "120"}},
            r"HTTP 429 Too Many Requests",
            status=429,
        ),
        Endpoint(f"{P}/500", {"status": 500}, r"HTTP 500 Internal Server Error", status=500),
    ]


@dataclass(frozen=True)
class PollRun:
    config: Path
    measured: hostile.Measured
    feeds: dict[str, dict[str, Any]]  # `monitor feeds --json`, by URL
    stories: list[dict[str, Any]]  # `monitor stories --all --json`
    stories_text: str
    database_bytes: bytes  # monitor.db and its -wal / -shm, concatenated


@dataclass(frozen=True)
class Runs:
    root: Path
    server: FeedServer
    endpoints: list[Endpoint]
    corpus_urls: list[str]
    marker: str
    baseline: PollRun  # the corpus alone, polled just before the hostile poll
    hostile: PollRun
    baseline_after: PollRun  # the corpus alone again, just after

    @property
    def hostile_urls(self) -> list[str]:
        return [self.server.url(ep.path) for ep in self.endpoints] + self.corpus_urls


def corpus_files() -> list[str]:
    assert FEEDS_DIR.is_dir(), f"the shared feed corpus is missing: {FEEDS_DIR}"
    return sorted(
        p.relative_to(FEEDS_DIR).as_posix()
        for p in FEEDS_DIR.rglob("*")
        if p.is_file() and p.name != "MANIFEST.tsv"
    )


def _poll(folder: Path, urls: list[str]) -> PollRun:
    folder.mkdir()
    config = hostile.write_config(
        folder / "feeds.yaml",
        settings={
            "database": "sqlite:///monitor.db",
            "timeout": f"{TIMEOUT_SECONDS}s",
            "per_host": PER_HOST,
        },
        feeds=urls,
    )
    measured = hostile.run_measured(config, "poll")
    stories = hostile.run_monitor(config, "stories", "--all", "--json")
    assert stories.returncode == 0, stories.stderr
    return PollRun(
        config=config,
        measured=measured,
        feeds={f["url"]: f for f in hostile.monitor_json(config, "feeds")},
        stories=json.loads(stories.stdout),
        stories_text=stories.stdout,
        database_bytes=b"".join(p.read_bytes() for p in sorted(folder.glob("monitor.db*"))),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("hostile")
    marker = f"XXE-MARKER-{uuid.uuid4().hex}"
    secret = root / "secret.txt"
    secret.write_text(f"{marker}\n")
    with FeedServer() as server:
        eps = endpoints(server.url, secret, hostile.gzip_bomb())
        for ep in eps:
            if ep.route:
                server.route(ep.path, **ep.route)
        _redirect_chain(server, hops=8)
        corpus = [server.file_url(f) for f in corpus_files()]
        baseline = _poll(root / "baseline", corpus)
        server.reset_counters()
        hostile_run = _poll(root / "hostile", [server.url(ep.path) for ep in eps] + corpus)
        after = _poll(root / "baseline-after", corpus)
        yield Runs(root, server, eps, corpus, marker, baseline, hostile_run, after)


# ------------------------------------------------------------------ the hostile poll


def test_poll_exits_0_within_the_time_bound(runs: Runs) -> None:
    """Wall times are compared best to best: the shortest hostile poll against the shortest
    poll without the hostile endpoints, measured in turn (baseline, hostile, baseline). On
    a shared 2-core machine other work only ever adds time, by several seconds at a time,
    so when the first hostile poll misses the bound one more pair is measured."""
    for run in (runs.baseline, runs.hostile, runs.baseline_after):
        assert run.measured.returncode == 0, run.measured.stderr[-3000:]
    slow = sum(ep.slow for ep in runs.endpoints)
    allowance = math.ceil(slow / PER_HOST) * TIMEOUT_SECONDS
    with_them = [runs.hostile.measured.seconds]
    without = [runs.baseline.measured.seconds, runs.baseline_after.measured.seconds]
    if min(with_them) > allowance + min(without):
        with_them.append(_poll(runs.root / "hostile-again", runs.hostile_urls).measured.seconds)
        without.append(_poll(runs.root / "baseline-again", runs.corpus_urls).measured.seconds)
    bound = allowance + min(without)
    assert min(with_them) <= bound, (
        f"hostile poll took {min(with_them):.1f}s at best; bound {bound:.1f}s = "
        f"ceil({slow}/{PER_HOST}) x {TIMEOUT_SECONDS}s + {min(without):.1f}s without them "
        f"(polls with them: {with_them}, without: {without})"
    )


def test_poll_stays_under_600_mb(runs: Runs) -> None:
    m = runs.hostile.measured
    assert m.max_rss < MEMORY_LIMIT, f"largest process peaked at {m.max_rss / hostile.MB:.0f} MB"
    assert m.tree_peak < MEMORY_LIMIT, (
        f"process tree (pool workers included) peaked at {m.tree_peak / hostile.MB:.0f} MB"
    )


def test_poll_logs_no_traceback(runs: Runs) -> None:
    """A parser or storage crash is logged with a traceback: none may happen here."""
    for run in (runs.baseline, runs.hostile, runs.baseline_after):
        assert "Traceback" not in run.measured.stderr, run.measured.stderr[-5000:]


def _endpoint_ids(ep: Endpoint) -> str:
    return ep.path.removeprefix(f"{P}/")


ENDPOINT_NAMES = [_endpoint_ids(ep) for ep in endpoints(str, Path("/unused"), bomb=b"")]


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_each_hostile_endpoint_is_recorded_precisely(runs: Runs, name: str) -> None:
    [ep] = [e for e in runs.endpoints if _endpoint_ids(e) == name]
    feed = runs.hostile.feeds[runs.server.url(ep.path)]
    refused = ep.refusal is not None and re.fullmatch(ep.refusal, feed["last_error"] or "")
    if ep.error is None and not refused:  # readable: its entries stored, no error
        assert feed["last_error"] is None, feed
        assert feed["articles"] >= 1, feed
        assert feed["consecutive_errors"] == 0, feed
    else:
        expected = ep.refusal if refused else ep.error
        assert expected is not None and re.fullmatch(expected, feed["last_error"] or ""), feed
        assert feed["consecutive_errors"] == 1, feed
        assert feed["articles"] == 0, feed
    assert feed["last_status"] == ep.status, feed
    assert feed["last_fetch"] is not None, feed
    if ep.status == 410:
        assert feed["enabled"] is False and feed["disabled_reason"] == "410 Gone", feed
    else:
        assert feed["enabled"] is True, feed


def _manifest() -> dict[str, dict[str, str]]:
    with open(FEEDS_DIR / "MANIFEST.tsv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


# Real outlets' files whose entries feedparser counts but which carry nothing to store:
# every entry has no title, no link and no text (`<entry><author></author></entry>`).
NOTHING_TO_STORE = {
    "rss-parser/test/input/incomplete-fields.atom",
    "rss-parser/test/input/missing-fields.atom",
}


def test_readable_feeds_entries_are_stored(runs: Runs) -> None:
    """Every real outlet's file that feedparser reads entries from has articles stored."""
    manifest = _manifest()
    missing = []
    for url in runs.corpus_urls:
        rel = unquote(url.split("/files/", 1)[1])
        row, feed = manifest.get(rel), runs.hostile.feeds[url]
        if rel.startswith("feedparser/") or row is None or rel in NOTHING_TO_STORE:
            continue  # feedparser's own edge-case corpus: compared with the baseline below
        if int(row["items"] or 0) > 0 and feed["articles"] == 0:
            missing.append((rel, feed["last_error"]))
    assert not missing
    feeds = [runs.hostile.feeds[url] for url in runs.corpus_urls]
    stored = sum(1 for f in feeds if f["articles"] > 0)
    assert stored > 600, stored  # ~700 of the 2,292 files hold storable entries


def test_hostile_neighbours_change_no_corpus_outcome(runs: Runs) -> None:
    """Each corpus feed ends exactly as in the poll without the hostile endpoints.

    A success's ``last_error`` is left out: it may carry the stale hint "no new item since
    <date>", and which items count as new to a feed depends on which other feeds carrying
    the same URLs were stored before it.
    """

    def outcome(run: PollRun, url: str) -> tuple[Any, ...]:
        f = run.feeds[url]
        failure = f["last_error"] if f["consecutive_errors"] else None
        return (f["last_status"], failure, f["articles"], f["enabled"])

    differ = {
        url: (outcome(runs.baseline, url), outcome(runs.hostile, url))
        for url in runs.corpus_urls
        if outcome(runs.baseline, url) != outcome(runs.hostile, url)
    }
    assert not differ


def test_no_local_file_content_is_stored_or_fetched(runs: Runs) -> None:
    marker = runs.marker.encode()
    assert marker not in runs.hostile.database_bytes
    assert runs.marker not in runs.hostile.stories_text
    assert runs.marker not in json.dumps(runs.hostile.feeds)
    assert runs.marker not in runs.hostile.measured.stderr + runs.hostile.measured.stdout
    assert runs.server.hits(f"{P}/xxe-probe") == 0  # no external entity fetched either


def test_no_expanded_entity_is_stored(runs: Runs) -> None:
    run = runs.hostile
    assert b"lollollol" not in run.database_bytes
    assert b"HAHAHAHA" not in run.database_bytes
    assert "lollollol" not in run.stories_text
    titles = _titles(runs.hostile, "https://hostile.example/")
    assert all(len(title) < 100 for title in titles.values()), titles  # stored or refused


def _titles(run: PollRun, prefix: str) -> dict[str, str]:
    return {
        a["url"]: a["title"]
        for s in run.stories
        for a in s["articles"]
        if (a["url"] or "").startswith(prefix)
    }


def test_invalid_utf8_entries_are_stored(runs: Runs) -> None:
    titles = _titles(runs.hostile, "https://utf8.example/")
    assert len(titles) == 6, titles


def test_invalid_utf8_keeps_the_valid_text(runs: Runs) -> None:
    titles = _titles(runs.hostile, "https://utf8.example/")
    assert titles and all(t.startswith(hostile.VALID_UTF8_TEXT) for t in titles.values()), titles


# ------------------------------------------------------------------ many feeds at once


def test_parse_time_limit_does_not_count_the_queue(tmp_path: Path) -> None:
    """Many copies of one real feed that parses in ~0.15 s, with a 1 s timeout (so a 2 s
    parse limit): the pool needs far longer than 2 s for all of them, none may be cut off
    for the time it waited for a worker (the limit counted queueing until d92537b)."""
    copies = 40 * (os.cpu_count() or 1)
    assert FEEDS_DIR.is_dir(), FEEDS_DIR
    with FeedServer() as server:
        urls = server.copy_urls(["RSParser/Tests/RSParserTests/Resources/atp.rss"], copies)
        config = hostile.write_config(
            tmp_path / "feeds.yaml",
            settings={"database": "sqlite:///monitor.db", "timeout": "1s", "per_host": 8},
            feeds=urls,
        )
        res = hostile.run_monitor(config, "poll", timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        feeds = hostile.monitor_json(config, "feeds")
    cut_off = [f["url"] for f in feeds if "parsing took" in (f["last_error"] or "")]
    assert not cut_off, f"{len(cut_off)} of {copies} copies 'took too long to parse'"
    # every copy that did not fail otherwise (a fetch timeout on a loaded machine, say)
    # has the feed's 100 entries
    assert all(f["articles"] == 100 for f in feeds if not f["consecutive_errors"])
    assert sum(f["articles"] == 100 for f in feeds) > copies // 2


def test_a_slow_to_parse_document_is_cut_off(tmp_path: Path) -> None:
    """The cycle stops waiting for a parse after 2 x timeout (pipeline.PARSE_TIMEOUT_FACTOR,
    the product's own bound). The poll may take that much longer than without the document,
    plus one timeout for the CPU the runaway parse takes from the rest on 2 cores; not the
    ~20 s the whole parse would need."""
    parse_limit = 2 * TIMEOUT_SECONDS
    with FeedServer() as server:
        server.route("/slow-parse", body=hostile.slow_parse_document(), headers=XML)
        normal = server.file_url("fast-news-reader/tests/fixtures/bbc.xml")
        slow = server.url("/slow-parse")
        settings = {"database": "sqlite:///monitor.db", "timeout": f"{TIMEOUT_SECONDS}s"}
        runs = {}
        for name, urls in (("without", [normal]), ("with", [slow, normal])):
            (tmp_path / name).mkdir()
            config = hostile.write_config(
                tmp_path / name / "feeds.yaml", settings=settings, feeds=urls
            )
            runs[name] = (hostile.run_measured(config, "poll", timeout=600), config)
    measured, config = runs["with"]
    assert measured.returncode == 0, measured.stderr[-3000:]
    feeds = {f["url"]: f for f in hostile.monitor_json(config, "feeds")}
    assert feeds[slow]["last_error"] == f"parsing took longer than {parse_limit}s"
    assert feeds[normal]["articles"] > 0
    bound = runs["without"][0].seconds + parse_limit + TIMEOUT_SECONDS
    assert measured.seconds <= bound, f"{measured.seconds:.1f}s > {bound:.1f}s"


# ------------------------------------------------------------------ broken configs

BASE_CONFIG = """\
version: 1
settings:
  database: sqlite:///monitor.db
  timeout: 2s
feeds:
  - url: https://example.org/rss
    name: One
  - url: https://example.org/other
entities:
  - name: Wagner Group
    aliases: [Wagner PMC]
alerts:
  - name: hook
    type: webhook
    url: https://hooks.example.org/x
"""
UNSET_VAR = "MONITOR_TEST_HOSTILE_UNSET_SECRET"


def _edit(old: str, new: str) -> str:
    assert old in BASE_CONFIG
    return BASE_CONFIG.replace(old, new, 1)


BROKEN_CONFIGS = {
    # name: (config text, "line:column", what the message must say)
    "unknown-key": (_edit("  timeout: 2s", "  timout: 2s"), "4:3", "settings.timout: unknown key"),
    "bad-duration": (
        _edit("timeout: 2s", "timeout: 2 minutes"),
        "4:12",
        "settings.timeout: invalid duration '2 minutes'",
    ),
    "non-http-url": (
        _edit("https://example.org/other", "ftp://example.org/other"),
        "8:10",
        "feeds[1].url: not an http or https URL",
    ),
    "missing-variable": (
        BASE_CONFIG + f"    secret: ${{{UNSET_VAR}}}\n",
        "16:13",
        f"alerts[0].secret: environment variable {UNSET_VAR} is not set",
    ),
    "broken-yaml": (
        _edit("aliases: [Wagner PMC]", "aliases: [Wagner PMC"),
        "12:7",
        "YAML syntax error",
    ),
    "tab-indent": (_edit("  timeout: 2s", "\ttimeout: 2s"), "4:1", "YAML syntax error"),
    "duplicate-entity": (
        _edit("alerts:", "  - name: Wagner Group\nalerts:"),
        "12:11",
        "entities[1].name: duplicate entity name",
    ),
    "duplicate-channel": (
        BASE_CONFIG + "  - name: hook\n    type: log\n",
        "16:11",
        "alerts[1].name: duplicate channel name",
    ),
    "duplicate-url": (
        _edit("https://example.org/other", "https://example.org/rss"),
        "8:10",
        "feeds[1].url: duplicate feed URL",
    ),
}


@pytest.mark.parametrize("command", ["validate", "poll"])
@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_broken_config_exits_2_with_line_and_column(
    tmp_path: Path, case: str, command: str
) -> None:
    text, where, message = BROKEN_CONFIGS[case]
    config = tmp_path / "feeds.yaml"
    config.write_text(text)
    res = hostile.run_monitor(config, command, env={UNSET_VAR: None})
    assert res.returncode == 2, res.stderr
    assert f"feeds.yaml:{where}: " in res.stderr, res.stderr
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "monitor.db").exists(), "a broken config must not touch the database"


def test_missing_variable_is_not_taken_from_an_empty_shell(tmp_path: Path) -> None:
    """Unset is an error; the same config with the variable set is valid."""
    config = tmp_path / "feeds.yaml"
    config.write_text(BROKEN_CONFIGS["missing-variable"][0])
    res = hostile.run_monitor(config, "validate", env={UNSET_VAR: "s3cret"})
    assert res.returncode == 0, res.stderr
    assert "s3cret" not in res.stdout + res.stderr
