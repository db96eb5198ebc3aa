"""Articles, their sources, mentions, stories and dedupe keys: the ingest transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from monitor.model import Article as ArticleRecord
from storage.engine import insert_ignoring, write_retrying
from storage.feeds import write_updates
from storage.outbox import row_values
from storage.records import IngestPlan, KnownKeys, StoredArticle
from storage.tables import (
    Article,
    ArticleSource,
    Counter,
    Feed,
    Mention,
    Outbox,
    SeenGuid,
    SeenUrl,
    Story,
    StoryEntity,
    UTCDateTime,
)

CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit
CLUSTER_COUNTER = "cluster"  # the last clustering round that stored articles


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class ArticleRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def known_keys(self, guids: Iterable[tuple[int, str]], urls: Iterable[str]) -> KnownKeys:
        """Which (feed, guid) and canonical URLs were seen before (even if since pruned)."""
        guid_list = sorted(set(guids))
        url_list = sorted(set(urls))
        found_guids: dict[tuple[int, str], tuple[str | None, str]] = {}
        found_urls: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            by_feed: dict[int, list[str]] = {}
            for feed_id, guid in guid_list:
                by_feed.setdefault(feed_id, []).append(guid)
            for feed_id, feed_guids in by_feed.items():
                for part in chunks(feed_guids):
                    rows = conn.execute(
                        select(SeenGuid.guid, SeenGuid.article_id, SeenGuid.content_hash).where(
                            SeenGuid.feed_id == feed_id, SeenGuid.guid.in_(part)
                        )
                    )
                    for guid, article_id, content_hash in rows:
                        found_guids[(feed_id, guid)] = (article_id, content_hash)
            for part in chunks(url_list):
                rows2 = conn.execute(
                    select(SeenUrl.canonical_url, SeenUrl.article_id).where(
                        SeenUrl.canonical_url.in_(part)
                    )
                )
                for url, article_id in rows2:
                    found_urls[url] = article_id
        return KnownKeys(guids=found_guids, urls=found_urls)

    def story_pairs(self, story_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(story, entity) pairs already recorded for these stories."""
        ids = sorted(set(story_ids))
        out: set[tuple[str, str]] = set()
        with self.engine.connect() as conn:
            for part in chunks(ids):
                rows = conn.execute(
                    select(StoryEntity.story_id, StoryEntity.entity).where(
                        StoryEntity.story_id.in_(part)
                    )
                )
                out.update((s, e) for s, e in rows)
        return out

    def article_stories(self, article_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(article_ids))
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for part in chunks(ids):
                rows = conn.execute(
                    select(Article.id, Article.story_id).where(Article.id.in_(part))
                )
                out.update(dict(rows.all()))
        return out

    def apply(self, plan: IngestPlan) -> None:
        """Write a whole tick in one transaction: articles and the alerts they cause together."""

        def write() -> None:
            with self.engine.begin() as conn:
                apply_plan(conn, plan)

        write_retrying(write, self.engine)

    def recent(self, since: datetime, *, after_round: int | None = None) -> Iterator[StoredArticle]:
        """Articles published since ``since`` in the order they were clustered (for the
        clusterer's warm start); with ``after_round``, only those of later rounds."""
        stmt = (
            select(*_STORED_COLUMNS)
            .join(Feed, Feed.id == Article.feed_id)
            .where(Article.published >= since)
        )
        if after_round is not None:
            stmt = stmt.where(Article.cluster_seq > after_round)
        stmt = stmt.order_by(
            Article.cluster_seq, Article.fetched, Article.published, Feed.url, Article.entry_index
        )
        with self.engine.connect() as conn:
            yield from stream_stored(conn, stmt)

    def cluster_round(self) -> int:
        """The last clustering round that stored articles (0 before the first)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(Counter.value).where(Counter.name == CLUSTER_COUNTER)
            ).scalar()
        return int(value or 0)


def apply_plan(conn: Connection, plan: IngestPlan) -> None:
    write_updates(conn, plan.feed_updates, plan.lease_owner)
    if plan.new_articles:
        _set_round(conn, plan.cluster_seq)
    new_stories = [s for s in plan.stories if s.new]
    if new_stories:
        conn.execute(
            insert(Story),
            [
                {
                    "id": s.id,
                    "title": s.title or "",
                    "first_seen": s.first_seen,
                    "last_seen": s.last_seen,
                    "last_published": s.last_published,
                    "sources": 0,
                }
                for s in new_stories
            ],
        )
    least = func.min if conn.dialect.name == "sqlite" else func.least
    # known stories: one executemany per shape (with or without a new title)
    for titled in (False, True):
        rows = [
            {"b_id": s.id, "b_first": s.first_seen, "b_last": s.last_seen}
            | {"b_published": s.last_published}
            | ({"b_title": s.title} if titled else {})
            for s in plan.stories
            if not s.new and (s.title is not None) == titled
        ]
        if not rows:
            continue
        values: dict[str, Any] = {
            "first_seen": least(Story.first_seen, bindparam("b_first", type_=UTCDateTime())),
            "last_seen": bindparam("b_last"),
            "last_published": bindparam("b_published"),
        }
        if titled:
            values["title"] = bindparam("b_title")
        conn.execute(update(Story).where(Story.id == bindparam("b_id")).values(**values), rows)
    if plan.new_articles:
        conn.execute(
            insert(Article),
            [_article_row(n) | {"cluster_seq": plan.cluster_seq} for n in plan.new_articles],
        )
        conn.execute(
            insert(ArticleSource),
            [
                {"article_id": n.id, "feed_id": n.feed_id, "first_seen": n.article.fetched}
                for n in plan.new_articles
            ],
        )
    for u in plan.updates:
        a = u.article
        conn.execute(
            update(Article)
            .where(Article.id == u.article_id)
            .values(
                title=a.title, summary=a.summary, content=a.content, content_hash=a.content_hash
            )
        )
        conn.execute(
            update(SeenGuid)
            .where(SeenGuid.article_id == u.article_id)
            .values(content_hash=a.content_hash)
        )
    _insert_sources(conn, plan.sources)
    mentions = [
        {"article_id": n.id, "entity": m.entity, "alias": m.alias, "field": m.field}
        for n in plan.new_articles
        for m in set(n.mentions)
    ] + [
        {"article_id": u.article_id, "entity": m.entity, "alias": m.alias, "field": m.field}
        for u in plan.updates
        for m in set(u.mentions)
    ]
    if plan.updates:
        conn.execute(
            delete(Mention).where(Mention.article_id.in_([u.article_id for u in plan.updates]))
        )
    if mentions:
        conn.execute(insert(Mention), mentions)
    if plan.pairs:
        conn.execute(
            insert(StoryEntity),
            [
                {"story_id": s, "entity": e, "first_article_id": a, "alerted": al}
                for s, e, a, al in plan.pairs
            ],
        )
    if plan.seen_guids:
        conn.execute(
            insert(SeenGuid),
            [
                {"feed_id": f, "guid": g, "article_id": a, "content_hash": h}
                for f, g, a, h in plan.seen_guids
            ],
        )
    if plan.seen_urls:
        conn.execute(
            insert(SeenUrl),
            [{"canonical_url": u, "article_id": a} for u, a in plan.seen_urls],
        )
    if plan.alerts:
        conn.execute(insert(Outbox), [row_values(al) for al in plan.alerts])
    touched = sorted({s.id for s in plan.stories})
    for part in chunks(touched):
        _refresh_sources(conn, part)


def _set_round(conn: Connection, seq: int) -> None:
    conn.execute(insert_ignoring(conn, Counter, ["name"]), [{"name": CLUSTER_COUNTER, "value": 0}])
    conn.execute(update(Counter).where(Counter.name == CLUSTER_COUNTER).values(value=seq))


def _insert_sources(conn: Connection, sources: Sequence[tuple[str, int, datetime]]) -> None:
    """Record extra feeds carrying known articles, skipping pairs already recorded."""
    if not sources:
        return
    wanted = {(a, f): seen for a, f, seen in sources}
    existing: set[tuple[str, int]] = set()
    # by article id alone: the primary key's first column serves it (a row-value IN list
    # makes SQLite scan the whole table)
    article_ids = sorted({a for a, _ in wanted})
    for part in chunks(article_ids):
        rows = conn.execute(
            select(ArticleSource.article_id, ArticleSource.feed_id).where(
                ArticleSource.article_id.in_(list(part))
            )
        )
        existing.update((a, f) for a, f in rows)
    fresh = [
        {"article_id": a, "feed_id": f, "first_seen": seen}
        for (a, f), seen in wanted.items()
        if (a, f) not in existing
    ]
    if fresh:
        conn.execute(insert(ArticleSource), fresh)


def _refresh_sources(conn: Connection, story_ids: Sequence[str]) -> None:
    counts = dict(
        conn.execute(
            select(Article.story_id, func.count(func.distinct(ArticleSource.feed_id)))
            .join(ArticleSource, ArticleSource.article_id == Article.id)
            .where(Article.story_id.in_(list(story_ids)))
            .group_by(Article.story_id)
        ).all()
    )
    conn.execute(  # one executemany, not a statement per story
        update(Story).where(Story.id == bindparam("b_id")).values(sources=bindparam("b_sources")),
        [{"b_id": sid, "b_sources": counts.get(sid, 0)} for sid in story_ids],
    )


def _article_row(n: Any) -> dict[str, Any]:
    a: ArticleRecord = n.article
    return {
        "id": n.id,
        "feed_id": n.feed_id,
        "story_id": n.story_id,
        "guid": a.guid,
        "url": a.url,
        "canonical_url": a.canonical_url,
        "title": a.title,
        "summary": a.summary,
        "content": a.content,
        "content_hash": a.content_hash,
        "published": a.published,
        "fetched": a.fetched,
        "entry_index": a.entry_index,
        "baseline": n.baseline,
        "reason_method": n.decision.method,
        "reason_score": float(n.decision.score),
        "reason_shared": json.dumps(list(n.decision.shared)),
    }


# What a StoredArticle is made of, as plain columns: the warm start reads tens of thousands
# of rows and needs no ORM objects (identity map, instance state) for them.
_STORED_COLUMNS = (
    Article.id,
    Article.story_id,
    Article.entry_index,
    Article.guid,
    Article.url,
    Article.canonical_url,
    Article.title,
    Article.summary,
    Article.content,
    Article.content_hash,
    Article.published,
    Article.fetched,
    Article.reason_method,
    Article.reason_score,
    Article.reason_shared,
    Feed.url.label("feed_url"),
    Feed.name.label("feed_name"),
    Feed.title.label("feed_title"),
)


def stream_stored(conn: Connection, stmt: Any) -> Iterator[StoredArticle]:
    """Turn rows of ``_STORED_COLUMNS`` into records, with their entities.

    Streamed a chunk at a time as plain Core rows: a warm start over a big story window
    never holds every row at once, and makes no ORM object per article.
    """
    result = conn.execute(stmt.execution_options(yield_per=CHUNK))
    for rows in result.partitions():
        entities = _entities(conn, [r.id for r in rows])
        for r in rows:
            feed = r.feed_name or r.feed_title or r.feed_url
            yield _stored(r, r.feed_url, feed, tuple(sorted(entities.get(r.id, ()))))


def _entities(conn: Connection | Session, ids: list[str]) -> dict[str, set[str]]:
    """Article id -> the tracked entities it mentions."""
    entities: dict[str, set[str]] = {}
    for aid, ent in conn.execute(
        select(Mention.article_id, Mention.entity).where(Mention.article_id.in_(ids))
    ):
        entities.setdefault(aid, set()).add(ent)
    return entities


def load_articles(session: Session, stmt: Any) -> Iterator[StoredArticle]:
    """Turn (Article, feed url, feed name, feed title) rows into records, with their entities.

    Streamed a chunk at a time: a warm start over a big story window never holds every
    row at once (the session's identity map holds its objects weakly).
    """
    result = session.execute(stmt.execution_options(yield_per=CHUNK))
    for rows in result.partitions():
        entities = _entities(session, [r[0].id for r in rows])
        for row in rows:
            art, feed_url, feed_name, feed_title = row
            yield _stored(
                art,
                feed_url,
                feed_name or feed_title or feed_url,
                tuple(sorted(entities.get(art.id, ()))),
            )


def _stored(art: Any, feed_url: str, feed: str, entities: tuple[str, ...]) -> StoredArticle:
    """``art``: an ``Article`` or a row of its columns (same attribute names)."""
    record = ArticleRecord(
        feed_url=feed_url,
        entry_index=art.entry_index,
        guid=art.guid,
        url=art.url,
        canonical_url=art.canonical_url,
        title=art.title,
        summary=art.summary,
        content=art.content,
        content_hash=art.content_hash,
        published=art.published,
        fetched=art.fetched,
    )
    return StoredArticle(
        id=art.id,
        story_id=art.story_id,
        feed=feed,
        feed_url=feed_url,
        article=record,
        method=art.reason_method,
        score=art.reason_score,
        shared=tuple(json.loads(art.reason_shared or "[]")),
        entities=entities,
    )
