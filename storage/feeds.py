"""Feed rows: configured feeds, their fetch state and what is due."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, select, update

from storage.engine import insert_ignoring, write_retrying
from storage.records import FeedState, FeedUpdate
from storage.tables import article_sources, feeds


def _state(row: Row[Any], articles: int = 0) -> FeedState:
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

    def sync(self, configured: Sequence[tuple[str, str | None]], now: datetime) -> None:
        """Make sure every configured (url, name) has a row; new feeds are due at once."""
        write_retrying(lambda: self._sync(configured, now), self.engine)

    def _sync(self, configured: Sequence[tuple[str, str | None]], now: datetime) -> None:
        with self.engine.begin() as conn:
            known = {url: name for url, name in conn.execute(select(feeds.c.url, feeds.c.name))}
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
                for url, name in configured
                if url not in known
            ]
            if fresh:  # another instance starting at the same moment may add them too
                conn.execute(insert_ignoring(conn, feeds, ["url"]), fresh)
            for url, name in configured:
                if url in known and known[url] != name:
                    conn.execute(update(feeds).where(feeds.c.url == url).values(name=name))

    def states(
        self, urls: Iterable[str] | None = None, *, count_articles: bool = False
    ) -> list[FeedState]:
        stmt = select(feeds)
        if urls is not None:
            stmt = stmt.where(feeds.c.url.in_(list(urls)))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            counts: dict[int, int] = {}
            if count_articles and rows:
                counts = dict(
                    conn.execute(
                        select(article_sources.c.feed_id, func.count()).group_by(
                            article_sources.c.feed_id
                        )
                    ).all()
                )
        return [_state(r, counts.get(r.id, 0)) for r in rows]

    def due(self, urls: Iterable[str], now: datetime) -> list[FeedState]:
        return [
            s
            for s in self.states(urls)
            if s.enabled and (s.next_poll is None or s.next_poll <= now)
        ]

    def claim(
        self,
        now: datetime,
        *,
        owner: str,
        limit: int,
        lease: timedelta,
        due_only: bool = True,
        not_since: datetime | None = None,
        exclude: Collection[int] = (),
    ) -> list[FeedState]:
        """Lease up to ``limit`` feeds to ``owner`` until ``now + lease``: enabled feeds
        whose next poll has come (any, without ``due_only``) that no live lease holds,
        except ``exclude`` and, with ``not_since``, those fetched since then (once per cycle).

        A short committed transaction: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several
        instances claim at once without waiting for, or taking, each other's feeds.
        """
        if limit <= 0:
            return []
        return write_retrying(
            lambda: self._claim(now, owner, limit, lease, due_only, not_since, exclude),
            self.engine,
        )

    def _claim(
        self,
        now: datetime,
        owner: str,
        limit: int,
        lease: timedelta,
        due_only: bool,
        not_since: datetime | None,
        exclude: Collection[int],
    ) -> list[FeedState]:
        stmt = select(feeds).where(
            feeds.c.enabled.is_(True),
            feeds.c.lease_until.is_(None) | (feeds.c.lease_until < now),
        )
        if exclude:
            stmt = stmt.where(feeds.c.id.not_in(list(exclude)))
        if due_only:
            stmt = stmt.where(feeds.c.next_poll.is_(None) | (feeds.c.next_poll <= now))
        if not_since is not None:
            stmt = stmt.where(feeds.c.last_fetch.is_(None) | (feeds.c.last_fetch < not_since))
        stmt = (
            stmt.order_by(feeds.c.next_poll.is_not(None), feeds.c.next_poll, feeds.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
            if rows:
                conn.execute(
                    update(feeds)
                    .where(feeds.c.id.in_([r.id for r in rows]))
                    .values(lease_owner=owner, lease_until=now + lease)
                )
        return [_state(r) for r in rows]

    def ids(self) -> dict[str, int]:
        """Every stored feed: url -> id."""
        with self.engine.connect() as conn:
            return {url: i for url, i in conn.execute(select(feeds.c.url, feeds.c.id))}

    def extend(self, ids: Collection[int], owner: str, until: datetime) -> None:
        """Push the leases ``owner`` still holds on ``ids`` to ``until`` (work in progress)."""
        if not ids:
            return

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(feeds)
                    .where(feeds.c.id.in_(list(ids)), feeds.c.lease_owner == owner)
                    .values(lease_until=until)
                )

        write_retrying(write, self.engine)

    def owned(self, ids: Collection[int], owner: str) -> set[int]:
        """Those of ``ids`` whose lease ``owner`` still holds (only their results are kept)."""
        if not ids:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(feeds.c.id).where(feeds.c.id.in_(list(ids)), feeds.c.lease_owner == owner)
            )
            return set(rows.scalars())

    def release(self, ids: Collection[int], owner: str) -> None:
        """Give leases back (work abandoned): the feeds are free for any instance at once."""
        if ids:
            self._free(feeds.c.id.in_(list(ids)) & (feeds.c.lease_owner == owner))

    def release_owners(self, owners: Collection[str]) -> int:
        """Free every lease of ``owners`` (instances known to be gone)."""
        return self._free(feeds.c.lease_owner.in_(list(owners))) if owners else 0

    def _free(self, which: Any) -> int:
        def write() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(feeds).where(which).values(lease_owner=None, lease_until=None)
                )
                return int(res.rowcount)

        return write_retrying(write, self.engine)

    def lease_owners(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(feeds.c.lease_owner).where(feeds.c.lease_owner.is_not(None)))
            return {r for r in rows.scalars() if r}

    def apply(self, updates: Sequence[FeedUpdate]) -> None:
        with self.engine.begin() as conn:
            write_updates(conn, updates)

    def enable(self, url: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(feeds).where(feeds.c.url == url).values(enabled=True, disabled_reason=None)
            )
            return bool(res.rowcount)


def write_updates(
    conn: Connection, updates: Sequence[FeedUpdate], lease_owner: str | None = None
) -> None:
    """Write fetch state, batching feeds that change the same columns into one executemany.

    With ``lease_owner``, only feeds that owner still leases are written, and their lease
    ends with the write.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in updates:
        values = dict(u.values)
        if lease_owner is not None:
            values["lease_owner"] = None
            values["lease_until"] = None
        if "item_gaps" in values and not isinstance(values["item_gaps"], str | None):
            values["item_gaps"] = json.dumps(list(values["item_gaps"]))
        values["b_feed_id"] = u.feed_id
        groups.setdefault(tuple(sorted(values)), []).append(values)
    for columns, rows in groups.items():
        stmt = (
            update(feeds)
            .where(feeds.c.id == bindparam("b_feed_id"))
            .values({c: bindparam(c) for c in columns if c != "b_feed_id"})
        )
        if lease_owner is not None:
            stmt = stmt.where(feeds.c.lease_owner == lease_owner)
        conn.execute(stmt, rows)
