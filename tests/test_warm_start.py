"""The clusterer's warm start and the stories view give back exactly what was stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from monitor.model import Article, Mention, StoryDecision
from storage.records import IngestPlan, NewArticle, StoredArticle, StoryWrite
from storage.store import Store

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
FEEDS = ["https://a.example/rss", "https://b.example/rss"]


def _article(feed: str, i: int) -> Article:
    at = NOW - timedelta(hours=i)
    return Article(
        feed_url=feed,
        entry_index=i,
        guid=f"g{i}",
        url=f"https://ex.org/{i}" if i % 2 else None,
        canonical_url=f"https://ex.org/{i}" if i % 2 else None,
        title=f"Title {i} über Zürich",
        summary=f"Summary {i}",
        content="" if i % 3 else f"Content {i} " * 50,
        content_hash=f"h{i}",
        published=at,
        fetched=at + timedelta(minutes=1),
    )


def _expected(i: int) -> StoredArticle:
    feed = FEEDS[i % 2]
    return StoredArticle(
        id=f"a{i}",
        story_id=f"s{i // 2}",
        feed="Outlet A" if feed == FEEDS[0] else feed,
        feed_url=feed,
        article=_article(feed, i),
        method="similar",
        score=0.5,
        shared=("x", "y"),
        entities=("Acme", "Zed") if i % 2 else (),
    )


def test_recent_and_stories_give_back_what_was_stored(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        store.feeds.sync([(FEEDS[0], "Outlet A"), (FEEDS[1], None)], NOW)
        ids = {s.url: s.id for s in store.feeds.states()}
        for seq, i in enumerate(range(6), start=1):
            feed = FEEDS[i % 2]
            art = _article(feed, i)
            mentions = (Mention("Acme", "ACME", "title"), Mention("Zed", "Zed", "summary"))
            new = NewArticle(
                f"a{i}",
                ids[feed],
                art,
                f"s{i // 2}",
                StoryDecision(None, "similar", 0.5, ("x", "y")),
                False,
                mentions if i % 2 else (),
            )
            story = StoryWrite(
                f"s{i // 2}", art.title, art.fetched, art.fetched, art.published, True
            )
            store.articles.apply(
                IngestPlan(
                    new_articles=(new,),
                    stories=(story,) if i % 2 == 0 else (),
                    cluster_seq=seq,
                )
            )
        since = NOW - timedelta(hours=4)
        got = list(store.articles.recent(since))
        later = list(store.articles.recent(since, after_round=3))
        viewed = {a.id: a for v in store.stories.query(since=None) for a in v.articles}
    finally:
        store.close()
    assert got == [_expected(i) for i in range(5)]  # in clustering order
    assert [s.id for s in later] == ["a3", "a4"]
    assert got[0].article.published == NOW and got[0].article.published.tzinfo is not None
    assert [viewed[a.id] for a in got] == got


# sqlite_stat1 of bench/fill_db.py's 1,000,000-article database after ANALYZE: with these
# statistics SQLite walked every feed's articles by feed_id for the warm start
_BIG_DATABASE_STATS = [
    ("feeds", "ix_feeds_next_poll", "2000 2000"),
    ("feeds", "sqlite_autoindex_feeds_1", "2000 1"),
    ("articles", "ix_articles_cluster_seq", "1000000 1000000"),
    ("articles", "ix_articles_story_id", "1000000 3"),
    ("articles", "ix_articles_published", "1000000 1"),
    ("articles", "ix_articles_feed_id", "1000000 500"),
    ("articles", "ix_articles_feed_guid", "1000000 500 1"),
    ("articles", "ix_articles_content_hash", "1000000 1"),
    ("articles", "ix_articles_canonical_url", "1000000 1"),
    ("articles", "sqlite_autoindex_articles_1", "1000000 1"),
]


def test_warm_start_reads_the_window_by_its_index_not_every_article(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        engine = store.articles.engine
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")  # creates sqlite_stat1
            conn.exec_driver_sql("DELETE FROM sqlite_stat1")
            for row in _BIG_DATABASE_STATS:
                conn.exec_driver_sql("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", row)
        engine.dispose()  # connections read the statistics when they open
        issued: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            issued.append((args[2], args[3]))  # statement, parameters

        event.listen(engine, "before_cursor_execute", record)
        assert list(store.articles.recent(NOW - timedelta(days=4))) == []
        event.remove(engine, "before_cursor_execute", record)
        statement, params = next((s, p) for s, p in issued if "ORDER BY" in s)
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    finally:
        store.close()
    steps = [row[-1] for row in plan]
    assert any("ix_articles_published" in step for step in steps), steps
    assert not any("ix_articles_feed_id" in step for step in steps), steps
