"""End to end through `monitor poll`'s code path: real HTTP feeds, real SQLite, real channels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import Config, load_config
from monitor.daemon import poll_once
from storage.store import Store
from tests.feedbuild import MARCH, RECRUIT, Item, LiveFeed, serve
from tests.feedserver import FeedServer

ENTITIES = """
entities:
  - name: Wagner Group
    aliases: [Wagner, Wagner PMC]
    exclude: [Richard Wagner]
  - name: Yevgeny Prigozhin
    aliases: [Prigozhin]
  - name: North Atlantic Treaty Organization
    aliases: [{text: NATO, case: exact}]
"""


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


def write_config(
    tmp_path: Path, urls: list[str], *, extra_settings: str = "", channels: str | None = None
) -> Path:
    feeds = "\n".join(f"  - url: {u}\n    tags: [t{i}]" for i, u in enumerate(urls))
    channels = (
        channels
        if channels is not None
        else ("  - name: log\n    type: log\n    path: alerts.jsonl\n    feed_health: true\n")
    )
    text = (
        f"version: 1\nsettings:\n  database: sqlite:///monitor.db\n  timeout: 5s\n"
        f"{extra_settings}feeds:\n{feeds}\n{ENTITIES}alerts:\n{channels}"
    )
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    return path


def poll(path: Path) -> str:
    return asyncio.run(poll_once(load_config(path), deliver_timeout=10))


def store_of(path: Path) -> Store:
    cfg: Config = load_config(path)
    return Store.open(cfg.settings.database)


def logged_alerts(tmp_path: Path) -> list[dict]:
    f = tmp_path / "alerts.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


NOW = datetime.now(UTC)


def test_three_outlets_one_event_one_story_and_one_alert_per_entity(server, tmp_path):
    feeds = [
        LiveFeed(
            f"Outlet {c}",
            [
                Item(
                    f"{c}-old",
                    "Weather in the capital",
                    "Mild rain.",
                    published=NOW - timedelta(days=2),
                )
            ],
        )
        for c in "ABC"
    ]
    urls = [serve(server, f"/feed{i}", f) for i, f in enumerate(feeds)]
    path = write_config(tmp_path, urls)
    poll(path)  # baseline: stored, no alert
    assert logged_alerts(tmp_path) == []
    for i, (feed, (title, summary)) in enumerate(zip(feeds, MARCH, strict=True)):
        feed.items.append(
            Item(f"march-{i}", title, summary, published=NOW - timedelta(minutes=30 - i))
        )
    feeds[0].items.append(Item("recruit", *RECRUIT, published=NOW - timedelta(hours=20)))
    poll(path)
    store = store_of(path)
    stories = store.stories.query(since=None)
    by_title = {a.article.title: s.id for s in stories for a in s.articles}
    march_ids = {by_title[t] for t, _ in MARCH}
    assert len(march_ids) == 1, [(s.title, [a.article.title for a in s.articles]) for s in stories]
    march = march_ids.pop()
    assert by_title[RECRUIT[0]] != march
    alerts = logged_alerts(tmp_path)
    pairs = sorted((a["entity"]["name"], a["story"]["id"]) for a in alerts)
    assert pairs == sorted(
        [
            ("Wagner Group", march),
            ("Yevgeny Prigozhin", march),
            ("Wagner Group", by_title[RECRUIT[0]]),
            ("Yevgeny Prigozhin", by_title[RECRUIT[0]]),
        ]
    )
    march_alert = next(a for a in alerts if a["story"]["id"] == march)
    assert march_alert["story"]["sources"] == 3
    assert [x["title"] for x in march_alert["story"]["articles"]] == [t for t, _ in MARCH]
    # polling again changes nothing and sends conditional requests
    poll(path)
    assert len(logged_alerts(tmp_path)) == 4
    assert all(r.headers.get("if-none-match") for r in server.requests("/feed0")[1:])
    store.close()


def test_baseline_then_new_item_alerts_once_and_excludes_veto(server, tmp_path):
    feed = LiveFeed("Wire", [Item("1", "Wagner Group fighters seen in Mali", "Mercenaries.")])
    path = write_config(tmp_path, [serve(server, "/wire", feed)])
    poll(path)
    assert logged_alerts(tmp_path) == []
    feed.items.append(Item("2", "Bayreuth stages Richard Wagner's Ring cycle", "Opera festival."))
    feed.items.append(Item("3", "NATO allies meet in Vilnius", "Summit on Ukraine support."))
    feed.items.append(Item("4", "Nato-Gipfel: nato ist nicht case-exact", "lowercase nato."))
    poll(path)
    names = [a["entity"]["name"] for a in logged_alerts(tmp_path)]
    assert names == ["North Atlantic Treaty Organization"]


def test_cross_feed_duplicate_url_is_stored_once_with_two_sources(server, tmp_path):
    link = "https://news.example/story?id=7&utm_source=rss"
    a = LiveFeed("A", [Item("x1", "Quake hits coastal town", "A strong quake.", link=link)])
    b = LiveFeed(
        "B",
        [
            Item(
                "other-guid",
                "Quake hits coastal town",
                "A strong quake.",
                link="https://NEWS.example/story?id=7#top",
            )
        ],
    )
    path = write_config(tmp_path, [serve(server, "/a", a), serve(server, "/b", b)])
    poll(path)
    store = store_of(path)
    [story] = store.stories.query(since=None)
    assert len(story.articles) == 1 and story.sources == 2
    feeds = {s.url: s for s in store.feeds.states(count_articles=True)}
    assert sorted(s.articles for s in feeds.values()) == [1, 1]
    store.close()


def test_changed_entry_is_updated_and_rematched(server, tmp_path):
    feed = LiveFeed("Wire", [Item("1", "Fighting near the border", "Details to follow.")])
    path = write_config(tmp_path, [serve(server, "/wire", feed)])
    poll(path)
    feed.items[0] = Item(
        "1",
        "Fighting near the border",
        "Wagner PMC units took part.",
        published=feed.items[0].published,
    )
    poll(path)
    store = store_of(path)
    [story] = store.stories.query(since=None)
    assert len(story.articles) == 1
    assert story.articles[0].article.summary == "Wagner PMC units took part."
    assert story.entities == ("Wagner Group",)
    assert [a["entity"]["name"] for a in logged_alerts(tmp_path)] == ["Wagner Group"]
    store.close()


def test_feed_health_broken_then_recovered(server, tmp_path):
    feed = LiveFeed("Flaky", [Item("1", "Hello", "World")])
    path = write_config(
        tmp_path, [serve(server, "/flaky", feed)], extra_settings="  broken_after: 1ms\n"
    )
    poll(path)
    feed.status = 500
    poll(path)
    assert logged_alerts(tmp_path) == []  # failing, but not yet for broken_after
    poll(path)
    store = store_of(path)
    [st] = store.feeds.states()
    assert st.last_error == "HTTP 500 Internal Server Error" and st.consecutive_errors == 2
    feed.status = 200
    poll(path)
    events = [a["event"] for a in logged_alerts(tmp_path)]
    assert events == ["feed.broken", "feed.recovered"]
    broken = logged_alerts(tmp_path)[0]
    assert broken["feed"]["url"] == st.url
    store.close()


def test_gone_disables_and_permanent_redirect_is_recorded(server, tmp_path):
    server.route("/gone", status=410)
    moved = LiveFeed("Moved", [Item("1", "Hello", "World")])
    target = serve(server, "/new-home", moved)
    server.route("/old-home", status=301, redirect_to=target)
    path = write_config(tmp_path, [server.url("/gone"), server.url("/old-home")])
    poll(path)
    store = store_of(path)
    states = {s.url: s for s in store.feeds.states()}
    gone = states[server.url("/gone")]
    assert not gone.enabled and gone.disabled_reason == "410 Gone"
    assert states[server.url("/old-home")].redirected_to == target
    hits = server.hits("/gone")
    poll(path)  # a disabled feed is not polled again
    assert server.hits("/gone") == hits
    store.close()


def test_poll_on_postgresql(server, tmp_path, pg_url):
    feed = LiveFeed("Wire", [Item("1", "Wagner convoy spotted", "On the M4.")])
    a = LiveFeed(
        "A",
        [Item("x", "Quake hits coastal town", "A strong quake.", link="https://news.example/q")],
    )
    b = LiveFeed(
        "B",
        [Item("y", "Quake hits coastal town", "A strong quake.", link="https://news.example/q")],
    )
    path = write_config(
        tmp_path,
        [serve(server, "/w", feed), serve(server, "/a", a), serve(server, "/b", b)],
        extra_settings=f"  database: '{pg_url}'\n",
    )
    text = path.read_text().replace("  database: sqlite:///monitor.db\n", "", 1)
    path.write_text(text)
    poll(path)
    feed.items.append(Item("2", "Wagner fighters leave Rostov", "Convoys seen."))
    poll(path)
    store = store_of(path)
    stories = store.stories.query(since=None)
    titles = sorted(a.article.title for s in stories for a in s.articles)
    assert titles == [
        "Quake hits coastal town",
        "Wagner convoy spotted",
        "Wagner fighters leave Rostov",
    ]
    assert [a["entity"]["name"] for a in logged_alerts(tmp_path)] == ["Wagner Group"]
    quake = next(s for s in stories if s.title == "Quake hits coastal town")
    assert quake.sources == 2
    store.close()
