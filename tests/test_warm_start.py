"""The clusterer's warm start reads plain rows: the same records as the ORM path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.model import Article, Mention, StoryDecision
from storage.articles import load_articles
from storage.records import IngestPlan, NewArticle, StoryWrite
from storage.store import Store
from storage.tables import Article as ArticleRow
from storage.tables import Feed

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


def test_recent_gives_what_the_orm_path_gives(db_url: str) -> None:
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
        with Session(store.articles.engine) as session:
            stmt = (
                select(ArticleRow, Feed.url, Feed.name, Feed.title)
                .join(Feed, Feed.id == ArticleRow.feed_id)
                .where(ArticleRow.published >= since)
                .order_by(ArticleRow.cluster_seq)
            )
            expected = list(load_articles(session, stmt))
    finally:
        store.close()
    assert got == expected
    assert [s.id for s in got] == ["a0", "a1", "a2", "a3", "a4"]
    assert [s.id for s in later] == ["a3", "a4"]
    assert got[1].entities == ("Acme", "Zed") and got[0].entities == ()
    assert (got[0].feed, got[1].feed) == ("Outlet A", FEEDS[1])
    assert got[0].article.published == NOW and got[0].article.published.tzinfo is not None
