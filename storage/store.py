"""The storage facade: one object the rest of the code holds, grouping the repositories."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StorageError
from monitor.model import ArticleSnapshot, FeedSnapshot, OutboxAlert, StorySnapshot
from storage.articles import ArticleRepo
from storage.engine import error_line, make_engine, migrate, safe_url
from storage.feeds import FeedRepo
from storage.instances import InstanceRepo, instance_id
from storage.outbox import OutboxRepo
from storage.stories import StoryRepo


class Store:
    """Opened once per process; every method opens its own short transaction.

    ``owner`` names this process in the leases it takes (feeds it fetches, alerts it
    delivers), so that several instances can share one PostgreSQL database.
    """

    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner or instance_id()
        self.feeds = FeedRepo(engine)
        self.articles = ArticleRepo(engine)
        self.stories = StoryRepo(engine)
        self.outbox = OutboxRepo(engine, self.owner)
        self.instances = InstanceRepo(engine)

    @property
    def shared(self) -> bool:
        """True when other instances may use the database too (PostgreSQL)."""
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def cluster_lock(self) -> Iterator[None]:
        """Serialise clustering across instances: a transaction-level advisory lock held
        (on a connection of its own) while a round reads what is stored and writes.

        SQLite needs none: one instance per file is enforced by the lock file.
        """
        if not self.shared:
            yield
            return
        with self.engine.connect() as conn, conn.begin():
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": _lock_key(conn.execute(text("SELECT current_schema()")).scalar())},
            )
            yield

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        """Connect and bring the schema up to date (migrations run at every start-up)."""
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StorageError(f"cannot open database {safe_url(url)}: {error_line(exc)}") from exc
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def story_snapshot(self, story_id: str) -> StorySnapshot | None:
        """The story as an alert shows it now (articles in ascending ``published``)."""
        view = self.stories.get(story_id)
        if view is None:
            return None
        return StorySnapshot(
            id=view.id,
            title=view.title,
            first_seen=view.first_seen,
            last_seen=view.last_seen,
            sources=view.sources,
            articles=tuple(
                ArticleSnapshot(
                    id=a.id,
                    title=a.article.title,
                    url=a.article.url,
                    feed=a.feed,
                    published=a.article.published,
                    summary=a.article.summary,
                )
                for a in view.articles
            ),
        )

    def feed_snapshot(self, feed_url: str) -> FeedSnapshot | None:
        states = self.feeds.states([feed_url])
        if not states:
            return None
        st = states[0]
        return FeedSnapshot(
            name=st.display_name,
            url=st.url,
            last_error=st.last_error,
            failing_since=st.failing_since,
        )

    # the OutboxStore protocol of alerts.deliver, delegated to the outbox repository
    def due_alerts(
        self, channel: str, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxAlert]:
        return self.outbox.due_alerts(channel, now, limit, lease)

    def renew(self, alert_id: str, now: datetime, lease: timedelta) -> bool:
        return self.outbox.renew(alert_id, now, lease)

    def first_story_alerts(
        self, channel: str, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        return self.outbox.first_story_alerts(channel, since, until, limit)

    def mark_sent(self, alert_id: str, *, attempts: int, sent_at: datetime) -> None:
        self.outbox.mark_sent(alert_id, attempts=attempts, sent_at=sent_at)

    def mark_retry(
        self, alert_id: str, *, attempts: int, next_attempt: datetime, last_error: str | None
    ) -> None:
        self.outbox.mark_retry(
            alert_id, attempts=attempts, next_attempt=next_attempt, last_error=last_error
        )

    def mark_failed(self, alert_id: str, *, attempts: int, last_error: str) -> None:
        self.outbox.mark_failed(alert_id, attempts=attempts, last_error=last_error)

    def close(self) -> None:
        self.engine.dispose()


def _lock_key(schema: object) -> int:
    """The clustering lock's key: one per schema, so separate deployments never wait."""
    return zlib.crc32(f"feed-monitor:cluster:{schema}".encode()) - 2**31
