"""Feed rows: configured feeds, their fetch state and what is due."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from storage.engine import write_retrying
from storage.records import FeedState, FeedUpdate
from storage.tables import ArticleSource, Feed


def _state(row: Feed, articles: int = 0) -> FeedState:
    gaps: tuple[float, ...] = tuple(json.loads(row.item_gaps)) if row.item_gaps else ()
    return FeedState(
        id=row.id,
        url=row.url,
        name=row.name,
        title=row.title,
        redirected_to=row.redirected_to,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        etag=row.etag,
        last_modified=row.last_modified,
        last_fetch=row.last_fetch,
        last_success=row.last_success,
        last_status=row.last_status,
        last_error=row.last_error,
        consecutive_errors=row.consecutive_errors,
        failing_since=row.failing_since,
        next_poll=row.next_poll,
        interval_seconds=row.interval_seconds,
        baselined=row.baselined,
        last_new_item=row.last_new_item,
        item_gaps=gaps,
        broken=row.broken,
        polled_by=row.polled_by,
        articles=articles,
    )


class FeedRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sync(self, feeds: Sequence[tuple[str, str | None]], now: datetime) -> None:
        """Make sure every configured (url, name) has a row; new feeds are due at once."""
        write_retrying(lambda: self._sync(feeds, now))

    def _sync(self, feeds: Sequence[tuple[str, str | None]], now: datetime) -> None:
        with self.engine.begin() as conn:
            known = {url: name for url, name in conn.execute(select(Feed.url, Feed.name))}
            fresh = [
                {
                    "url": url,
                    "name": name,
                    "next_poll": now,
                    "created_at": now,
                    "enabled": True,
                    "consecutive_errors": 0,
                    "baselined": False,
                    "broken": False,
                }
                for url, name in feeds
                if url not in known
            ]
            if fresh:
                conn.execute(insert(Feed), fresh)
            for url, name in feeds:
                if url in known and known[url] != name:
                    conn.execute(update(Feed).where(Feed.url == url).values(name=name))

    def states(
        self, urls: Iterable[str] | None = None, *, count_articles: bool = False
    ) -> list[FeedState]:
        with self.engine.connect() as conn:
            stmt = select(Feed)
            if urls is not None:
                stmt = stmt.where(Feed.url.in_(list(urls)))
            with Session(bind=conn) as session:
                rows = list(session.scalars(stmt).all())
                session.expunge_all()
            counts: dict[int, int] = {}
            if count_articles and rows:
                counts = dict(
                    conn.execute(
                        select(ArticleSource.feed_id, func.count()).group_by(ArticleSource.feed_id)
                    ).all()
                )
        return [_state(r, counts.get(r.id, 0)) for r in rows]

    def due(self, urls: Iterable[str], now: datetime) -> list[FeedState]:
        return [
            s
            for s in self.states(urls)
            if s.enabled and (s.next_poll is None or s.next_poll <= now)
        ]

    def apply(self, updates: Sequence[FeedUpdate]) -> None:
        with self.engine.begin() as conn:
            write_updates(conn, updates)

    def enable(self, url: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Feed).where(Feed.url == url).values(enabled=True, disabled_reason=None)
            )
            return bool(res.rowcount)


def write_updates(conn: Connection, updates: Sequence[FeedUpdate]) -> None:
    """Write fetch state, batching feeds that change the same columns into one executemany."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in updates:
        values = dict(u.values)
        if "item_gaps" in values and not isinstance(values["item_gaps"], str | None):
            values["item_gaps"] = json.dumps(list(values["item_gaps"]))
        values["b_feed_id"] = u.feed_id
        groups.setdefault(tuple(sorted(values)), []).append(values)
    for columns, rows in groups.items():
        stmt = (
            update(Feed)
            .where(Feed.id == bindparam("b_feed_id"))
            .values({c: bindparam(c) for c in columns if c != "b_feed_id"})
        )
        conn.execute(stmt, rows)
