"""Leases and clustering rounds: what lets several instances share one database.

Run against a real SQLite file and the real PostgreSQL server; the concurrent claim
test needs PostgreSQL's ``SKIP LOCKED``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.model import Article, OutboxAlert, StoryDecision
from storage.records import FeedUpdate, IngestPlan, NewArticle, StoryWrite
from storage.store import Store

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
LEASE = timedelta(seconds=40)
URLS = [f"https://f{i}.example/rss" for i in range(10)]


def _store(url: str, owner: str) -> Store:
    store = Store.open(url)
    store.owner = owner
    store.outbox.owner = owner
    return store


def test_claimed_feeds_are_not_claimed_again_until_the_lease_ends(db_url: str) -> None:
    a, b = _store(db_url, "host:1"), _store(db_url, "host:2")
    a.feeds.sync([(u, None) for u in URLS], NOW)
    got_a = a.feeds.claim(NOW, owner="host:1", limit=4, lease=LEASE)
    got_b = b.feeds.claim(NOW, owner="host:2", limit=100, lease=LEASE)
    assert len(got_a) == 4 and len(got_b) == 6
    assert not {f.id for f in got_a} & {f.id for f in got_b}
    assert b.feeds.claim(NOW, owner="host:2", limit=100, lease=LEASE) == []
    # a crashed holder's feeds come back once the lease has run out
    later = NOW + LEASE + timedelta(seconds=1)
    b.feeds.extend([f.id for f in got_b], "host:2", later + LEASE)
    again = b.feeds.claim(later, owner="host:2", limit=100, lease=LEASE)
    assert {f.id for f in again} == {f.id for f in got_a}
    # the old holder no longer owns them: its results are not written
    ids = [f.id for f in got_a]
    assert a.feeds.owned(ids, "host:1") == set()
    a.articles.apply(
        IngestPlan(
            feed_updates=tuple(FeedUpdate(i, {"last_status": 500}) for i in ids),
            lease_owner="host:1",
        )
    )
    assert all(s.last_status is None for s in a.feeds.states() if s.id in ids)
    # the holder's write ends its lease: due again only by next_poll
    b.articles.apply(
        IngestPlan(
            feed_updates=tuple(
                FeedUpdate(i, {"last_status": 200, "next_poll": later + timedelta(hours=1)})
                for i in ids
            ),
            lease_owner="host:2",
        )
    )
    assert b.feeds.owned(ids, "host:2") == set()
    assert {s.last_status for s in b.feeds.states() if s.id in ids} == {200}
    assert b.feeds.claim(later, owner="host:2", limit=100, lease=LEASE) == []
    a.close()
    b.close()


def test_claim_skips_disabled_feeds_and_feeds_polled_in_this_cycle(db_url: str) -> None:
    store = _store(db_url, "host:1")
    store.feeds.sync([(u, None) for u in URLS[:3]], NOW)
    first = store.feeds.claim(NOW, owner="host:1", limit=1, lease=LEASE, due_only=False)
    store.articles.apply(
        IngestPlan(
            feed_updates=(FeedUpdate(first[0].id, {"last_fetch": NOW + timedelta(seconds=1)}),),
            lease_owner="host:1",
        )
    )
    store.feeds.apply([FeedUpdate(first[0].id + 1, {"enabled": False})])
    rest = store.feeds.claim(
        NOW, owner="host:1", limit=10, lease=LEASE, due_only=False, not_since=NOW
    )
    assert [f.id for f in rest] == [first[0].id + 2]
    store.close()


def test_release_frees_leases_at_once(db_url: str) -> None:
    store = _store(db_url, "host:1")
    store.feeds.sync([(u, None) for u in URLS[:2]], NOW)
    got = store.feeds.claim(NOW, owner="host:1", limit=10, lease=LEASE)
    assert store.feeds.lease_owners() == {"host:1"}
    store.feeds.release([got[0].id], "host:1")
    assert store.feeds.release_owners(["host:1"]) == 1
    assert len(store.feeds.claim(NOW, owner="host:9", limit=10, lease=LEASE)) == 2
    store.close()


def test_concurrent_claims_never_hand_one_feed_to_two_instances(pg_url: str) -> None:
    stores = [_store(pg_url, f"host:{i}") for i in range(4)]
    urls = [f"https://c{i}.example/rss" for i in range(200)]
    stores[0].feeds.sync([(u, None) for u in urls], NOW)
    taken: dict[str, list[int]] = {}
    barrier = threading.Barrier(len(stores))

    def worker(store: Store) -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := store.feeds.claim(NOW, owner=store.owner, limit=7, lease=LEASE):
            mine.extend(f.id for f in batch)
        taken[store.owner] = mine

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in taken.values() for i in ids]
    assert len(every) == len(set(every)) == 200
    assert sum(1 for ids in taken.values() if ids) >= 2  # the work was shared
    for s in stores:
        s.close()


def _alert(n: int) -> OutboxAlert:
    return OutboxAlert(
        f"al_{n}",
        "hook",
        "feed.broken",
        None,
        (),
        None,
        "https://a/",
        NOW,
        0,
        "pending",
        None,
        None,
    )


def test_outbox_rows_are_claimed_by_one_instance(db_url: str) -> None:
    a, b = _store(db_url, "host:1"), _store(db_url, "host:2")
    a.outbox.add([_alert(i) for i in range(5)])
    got_a = a.due_alerts("hook", NOW, 3, LEASE)
    got_b = b.due_alerts("hook", NOW, 10, LEASE)
    assert len(got_a) == 3 and len(got_b) == 2
    assert not {x.id for x in got_a} & {x.id for x in got_b}
    assert a.renew(got_a[0].id, NOW, LEASE) and not b.renew(got_a[0].id, NOW, LEASE)
    a.mark_sent(got_a[0].id, attempts=1, sent_at=NOW)
    assert not a.renew(got_a[0].id, NOW, LEASE)  # delivered: never sent again
    # a lease that ran out is taken over; the old holder's renew then fails
    later = NOW + LEASE + timedelta(seconds=1)
    taken = b.due_alerts("hook", later, 10, LEASE)
    assert {x.id for x in taken} == {x.id for x in got_a[1:]} | {x.id for x in got_b}
    assert not a.renew(got_a[1].id, later, LEASE)
    a.close()
    b.close()


def test_cluster_rounds_and_instances(db_url: str) -> None:
    store = _store(db_url, "host:1")
    assert store.articles.cluster_round() == 0
    store.instances.heartbeat("host:1", "abc", NOW)
    store.instances.heartbeat("host:2", "def", NOW - timedelta(minutes=5))
    store.instances.heartbeat("host:1", "abd", NOW)
    assert store.instances.live(NOW, timedelta(minutes=1)) == {"host:1": "abd"}
    store.instances.forget_stale(NOW, timedelta(minutes=1))
    store.instances.leave(["host:1"])
    assert store.instances.live(NOW, timedelta(hours=1)) == {}
    with store.cluster_lock(), store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    store.close()


def test_instances_starting_together_migrate_once(pg_url: str) -> None:
    """Migrations run under an advisory lock: concurrent start-ups on a new database."""
    import subprocess
    import sys

    from tests.clirun import monitor_env

    code = "import sys; from storage.store import Store; Store.open(sys.argv[1]).close()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url],
            env=monitor_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    from storage.engine import SCHEMA_HEAD, current_revision, make_engine

    engine = make_engine(pg_url)
    assert current_revision(engine) == SCHEMA_HEAD
    engine.dispose()


def _new_article(feed_url: str, guid: str, title: str, summary: str, at: datetime) -> Article:
    return Article(
        feed_url=feed_url,
        entry_index=0,
        guid=guid,
        url=f"https://ex.org/{guid}",
        canonical_url=f"https://ex.org/{guid}",
        title=title,
        summary=summary,
        content="",
        content_hash=f"h-{guid}",
        published=at,
        fetched=at,
    )


def _store_round(store: Store, feed_id: int, art: Article, story: str, seq: int) -> None:
    store.articles.apply(
        IngestPlan(
            new_articles=(
                NewArticle(
                    f"a_{art.guid}", feed_id, art, story, StoryDecision(None, "new", 0.0), False, ()
                ),
            ),
            stories=(StoryWrite(story, art.title, art.fetched, art.fetched, art.published, True),),
            seen_guids=((feed_id, art.guid, f"a_{art.guid}", art.content_hash),),
            cluster_seq=seq,
        )
    )


def test_cluster_cache_replays_other_instances_rounds_without_rebuilding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor import clustercache
    from monitor.config import load_config

    builds: list[int] = []
    real_build = clustercache.build_clusterer

    def counting(*args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(clustercache, "build_clusterer", counting)
    (tmp_path / "feeds.yaml").write_text(
        f"version: 1\nsettings:\n  database: sqlite:///{tmp_path / 'm.db'}\n"
        "feeds:\n  - url: https://a.example/rss\n"
    )
    cfg = load_config(tmp_path / "feeds.yaml", env={})
    store = _store(cfg.settings.database, "host:1")
    store.feeds.sync([("https://a.example/rss", None)], NOW)
    feed_id = store.feeds.states()[0].id
    now = datetime.now(UTC)
    cache = clustercache.ClusterCache(cfg, store)
    # round 1: this instance stores an article about a quarry fire in Tromsø
    seq = cache.begin_round()
    first = _new_article(
        "https://a.example/rss", "g1", "Quarry fire near Tromsø forces evacuation",
        "Firefighters in Tromsø battled a quarry fire overnight.", now,
    )  # fmt: skip
    decision = cache.place(first, [], lambda: "s_1")
    _store_round(store, feed_id, first, "s_1", seq)
    cache.end_round(seq, stored_new=True)
    # round 2: nothing new here
    seq = cache.begin_round()
    cache.end_round(seq, stored_new=False)
    # meanwhile another instance stores round 2: a different event
    other = _new_article(
        "https://a.example/rss", "g2", "Glacier lagoon in Jökulsárlón reaches record size",
        "Scientists measured the Jökulsárlón glacier lagoon at a record area.", now,
    )  # fmt: skip
    _store_round(store, feed_id, other, "s_2", store.articles.cluster_round() + 1)
    # round 3: a report of the other instance's event joins its story, with no rebuild
    cache.begin_round()
    later = _new_article(
        "https://a.example/rss", "g3", "Jökulsárlón glacier lagoon at record size, scientists say",
        "The glacier lagoon of Jökulsárlón has grown to a record area, scientists measured.", now,
    )  # fmt: skip
    assert decision.method == "new"
    later = replace(later, content_hash=other.content_hash)  # the same wire copy
    assert cache.place(later, [], lambda: "s_new").story_id == "s_2"
    assert len(builds) == 1
    store.close()


def test_claims_take_only_the_feeds_of_their_own_config(db_url: str) -> None:
    from monitor.claims import Claims

    store = _store(db_url, "host:1")
    store.feeds.sync([(u, None) for u in URLS[:6]], NOW)  # two configs' feeds in one database
    mine = Claims(store, URLS[:3], LEASE, lambda: NOW, started=NOW)
    got = []
    while batch := mine.claim(2):
        got.extend(batch)
    assert sorted(f.url for f in got) == sorted(URLS[:3])
    # feeds another instance's config added after this cycle began are handed back
    theirs = Claims(store, URLS[3:6], LEASE, lambda: NOW, started=NOW)
    assert [f.url for f in theirs.claim(1)] == [URLS[3]]
    store.feeds.sync([(URLS[8], None)], NOW)
    assert sorted(f.url for f in theirs.claim(10)) == URLS[4:6]
    assert store.feeds.lease_owners() == {"host:1"}
    assert [f.url for f in store.feeds.claim(NOW, owner="host:2", limit=9, lease=LEASE)] == [
        URLS[8]
    ]
    store.close()


def test_instances_with_different_configs_log_config_mismatch(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    from monitor.config import load_config
    from monitor.daemon import Daemon

    def config(name: str, feeds: list[str]) -> Any:
        path = tmp_path / f"{name}.yaml"
        listed = "\n".join(f"  - url: {u}" for u in feeds)
        path.write_text(f"version: 1\nsettings:\n  database: {pg_url}\nfeeds:\n{listed}\n")
        return load_config(path, env={})

    old, new = config("old", URLS[:2]), config("new", URLS[:3])
    first, second = _store(pg_url, "host:1"), _store(pg_url, "host:2")
    daemons = [Daemon(old, first, None), Daemon(new, second, None)]
    with caplog.at_level(logging.WARNING, logger="monitor.daemon"):
        for daemon in daemons:
            asyncio.run(daemon.coordinate())
    assert daemons[1].mismatched == ["host:1"]
    assert any("config_mismatch" in r.getMessage() for r in caplog.records)
    # the same config everywhere again: no mismatch
    daemons[0].engine.config = new
    asyncio.run(daemons[0].coordinate())
    asyncio.run(daemons[1].coordinate())
    assert daemons[0].mismatched == [] and daemons[1].mismatched == []
    first.close()
    second.close()
