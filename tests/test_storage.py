"""Storage against real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from monitor.model import Article, Mention, OutboxAlert, StoryDecision
from storage.engine import make_engine, migrate
from storage.lock import InstanceLock, lock_path_for
from storage.records import FeedUpdate, IngestPlan, NewArticle, StoryWrite
from storage.store import Store
from storage.tables import metadata

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def article(feed_url: str, guid: str, title: str, *, minutes: int = 0) -> Article:
    t = NOW + timedelta(minutes=minutes)
    return Article(
        feed_url=feed_url,
        entry_index=0,
        guid=guid,
        url=f"https://ex.org/{guid}",
        canonical_url=f"https://ex.org/{guid}",
        title=title,
        summary="s",
        content="c",
        content_hash=f"h-{guid}",
        published=t,
        fetched=t,
    )


def test_migrating_empty_database_yields_models_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []
    migrate(engine)  # a second start-up is a no-op
    engine.dispose()


def test_commands_never_import_the_orm() -> None:
    """Storage is Core only: ``sqlalchemy.orm`` would add ~0.1 s to every command's start."""
    code = "import sys, monitor.cli, monitor.daemon, storage.store; print(sorted(sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sqlalchemy.orm" not in res.stdout


def test_schema_head_constant_matches_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from storage.engine import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_sqlite_uses_wal_and_foreign_keys(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    store.close()


def _ingest_one(
    store: Store,
    feed_id: int,
    art: Article,
    story: str,
    aid: str,
    mentions: tuple[Mention, ...] = (),
    alerts: tuple[OutboxAlert, ...] = (),
) -> None:
    store.articles.apply(
        IngestPlan(
            feed_updates=(FeedUpdate(feed_id, {"last_status": 200, "baselined": True}),),
            new_articles=(
                NewArticle(
                    aid, feed_id, art, story, StoryDecision(None, "new", 0.0), False, mentions
                ),
            ),
            stories=(StoryWrite(story, art.title, art.fetched, art.fetched, art.published, True),),
            pairs=tuple((story, m.entity, aid, True) for m in mentions),
            alerts=alerts,
            seen_guids=((feed_id, art.guid, aid, art.content_hash),),
            seen_urls=((art.canonical_url or "", aid),),
        )
    )


def test_feed_sync_ingest_and_views(db_url: str) -> None:
    store = Store.open(db_url)
    store.feeds.sync([("https://a.example/rss", "A"), ("https://b.example/rss", None)], NOW)
    store.feeds.sync([("https://a.example/rss", "A2")], NOW)
    states = {s.url: s for s in store.feeds.states()}
    assert states["https://a.example/rss"].name == "A2"
    assert len(store.feeds.due(states, NOW)) == 2
    fa = states["https://a.example/rss"].id
    fb = states["https://b.example/rss"].id
    art = article("https://a.example/rss", "g1", "Prigozhin halts march")
    alert = OutboxAlert(
        "al_1",
        "log",
        "story.new",
        "Wagner Group",
        ("Wagner",),
        "s_1",
        None,
        NOW,
        0,
        "pending",
        NOW,
        None,
    )
    _ingest_one(
        store, fa, art, "s_1", "a_1", (Mention("Wagner Group", "Wagner", "title"),), (alert,)
    )
    keys = store.articles.known_keys([(fa, "g1"), (fb, "g1")], ["https://ex.org/g1", "https://x/"])
    assert keys.guids == {(fa, "g1"): ("a_1", "h-g1")}
    assert keys.urls == {"https://ex.org/g1": "a_1"}
    # another feed carried the same URL: recorded as a source, counted once per feed
    store.articles.apply(
        IngestPlan(
            sources=(("a_1", fb, NOW),),
            stories=(StoryWrite("s_1", "Prigozhin halts march", NOW, NOW, NOW, False),),
        )
    )
    [view] = store.stories.query(since=NOW - timedelta(hours=1))
    assert view.sources == 2 and view.entities == ("Wagner Group",)
    assert [a.id for a in view.articles] == ["a_1"]
    assert store.stories.query(since=None, entity="NATO") == []
    assert store.articles.story_pairs(["s_1"]) == {("s_1", "Wagner Group")}
    assert [a.id for a in store.due_alerts("log", NOW, 10, timedelta(seconds=30))] == ["al_1"]
    snap = store.story_snapshot("s_1")
    assert snap is not None and snap.sources == 2 and snap.articles[0].feed == "A2"
    assert store.feeds.states(count_articles=True)[0].articles >= 1
    store.close()


def test_retention_keeps_dedupe_keys_and_pending_alerts(db_url: str) -> None:
    store = Store.open(db_url)
    store.feeds.sync([("https://a.example/rss", "A")], NOW)
    fa = store.feeds.states()[0].id
    alert = OutboxAlert(
        "al_2", "log", "story.new", "E", (), "s_2", None, NOW, 0, "pending", NOW, None
    )
    _ingest_one(store, fa, article("u", "old", "Old"), "s_1", "a_1")
    _ingest_one(store, fa, article("u", "pend", "Pending"), "s_2", "a_2", alerts=(alert,))
    assert store.stories.prune(NOW + timedelta(days=1)) == 1
    assert [s.id for s in store.stories.query(since=None)] == ["s_2"]
    keys = store.articles.known_keys([(fa, "old")], ["https://ex.org/old"])
    assert keys.guids[(fa, "old")][0] is None and keys.urls["https://ex.org/old"] is None
    store.close()


def test_outbox_retry_and_cancel(db_url: str) -> None:
    store = Store.open(db_url)
    a = OutboxAlert(
        "al_3", "hook", "feed.broken", None, (), None, "https://a/", NOW, 0, "pending", NOW, None
    )
    store.outbox.add([a])
    store.mark_retry(
        "al_3", attempts=1, next_attempt=NOW + timedelta(seconds=5), last_error="HTTP 500"
    )
    assert store.due_alerts("hook", NOW, 10, timedelta(seconds=30)) == []
    store.mark_failed("al_3", attempts=2, last_error="gave up")
    assert store.outbox.get("al_3").state == "failed"  # type: ignore[union-attr]
    assert store.outbox.retry(alert_id="al_3") == 1
    got = store.outbox.get("al_3")
    assert got is not None and got.state == "pending" and got.attempts == 0
    assert store.outbox.cancel_channels(["other"]) == 1
    assert store.outbox.pending_count() == 0
    store.close()


def test_instance_lock_names_holder(tmp_path) -> None:
    path = lock_path_for(f"sqlite:///{tmp_path / 'm.db'}")
    assert path is not None
    with InstanceLock(path):
        other = InstanceLock(path)
        try:
            other.acquire()
        except Exception as exc:  # noqa: BLE001
            import os

            assert f"pid {os.getpid()}" in str(exc)
        else:
            raise AssertionError("second lock acquired")
    assert lock_path_for("postgresql+psycopg://x/y") is None


def test_story_updates_keep_the_earliest_first_seen_and_the_title(db_url: str) -> None:
    store = Store.open(db_url)
    store.feeds.sync([("https://a.example/rss", "A")], NOW)
    fa = store.feeds.states()[0].id
    _ingest_one(store, fa, article("u", "g1", "First title"), "s_1", "a_1")
    _ingest_one(store, fa, article("u", "g2", "Other"), "s_2", "a_2")
    hour = timedelta(hours=1)
    store.articles.apply(
        IngestPlan(
            stories=(
                StoryWrite("s_1", None, NOW - hour, NOW + hour, NOW + hour, False),
                StoryWrite("s_2", "Renamed", NOW + hour, NOW + 2 * hour, NOW, False),
            )
        )
    )
    views = {v.id: v for v in store.stories.query(since=None)}
    assert views["s_1"].title == "First title" and views["s_1"].first_seen == NOW - hour
    assert views["s_1"].last_seen == NOW + hour
    assert views["s_2"].title == "Renamed" and views["s_2"].first_seen == NOW
    store.close()
