"""The database schema: typed SQLAlchemy models.

Only ``storage`` sees these rows; the rest of the code gets records from ``monitor.model``.
Times are stored as naive UTC (portable across SQLite and PostgreSQL) and come back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Feed(Base):
    """A configured feed and its fetch state; the configured URL is its identity."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str | None] = mapped_column(String(512))
    title: Mapped[str | None] = mapped_column(String(1024))
    redirected_to: Mapped[str | None] = mapped_column(String(2048))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(512))
    etag: Mapped[str | None] = mapped_column(String(1024))
    last_modified: Mapped[str | None] = mapped_column(String(256))
    last_fetch: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_poll: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    ttl_seconds: Mapped[float | None] = mapped_column(Float)
    baselined: Mapped[bool] = mapped_column(Boolean, default=False)
    last_new_item: Mapped[datetime | None] = mapped_column(UTCDateTime())
    item_gaps: Mapped[str | None] = mapped_column(Text)  # JSON list of recent gaps (seconds)
    broken: Mapped[bool] = mapped_column(Boolean, default=False)
    polled_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the instance fetching the feed now, and until when (see storage/claims.py)
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Story(Base):
    __tablename__ = "stories"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_published: Mapped[datetime] = mapped_column(UTCDateTime())
    sources: Mapped[int] = mapped_column(Integer, default=1)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    guid: Mapped[str] = mapped_column(String(2048))
    url: Mapped[str | None] = mapped_column(String(4096))
    canonical_url: Mapped[str | None] = mapped_column(String(4096))
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    published: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    fetched: Mapped[datetime] = mapped_column(UTCDateTime())
    entry_index: Mapped[int] = mapped_column(Integer, default=0)
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    reason_method: Mapped[str] = mapped_column(String(16))
    reason_score: Mapped[float] = mapped_column(Float)
    reason_shared: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    # the clustering round that stored it: instances replay the rounds they did not see
    cluster_seq: Mapped[int] = mapped_column(BigInteger, default=0, index=True)


class ArticleSource(Base):
    """Every feed that carried an article (counted in a story's ``sources``)."""

    __tablename__ = "article_sources"

    article_id: Mapped[str] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    feed_id: Mapped[int] = mapped_column(
        ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class Mention(Base):
    __tablename__ = "mentions"

    article_id: Mapped[str] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    entity: Mapped[str] = mapped_column(String(512), primary_key=True, index=True)
    alias: Mapped[str] = mapped_column(String(512), primary_key=True)
    field: Mapped[str] = mapped_column(String(16), primary_key=True)


class StoryEntity(Base):
    """A (story, entity) pair that was recorded; its existence means it never alerts again."""

    __tablename__ = "story_entities"

    story_id: Mapped[str] = mapped_column(
        ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True
    )
    entity: Mapped[str] = mapped_column(String(512), primary_key=True, index=True)
    first_article_id: Mapped[str] = mapped_column(String(40))
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)


class SeenGuid(Base):
    """Dedupe key (feed, guid); outlives retention so pruned items never come back."""

    __tablename__ = "seen_guids"

    feed_id: Mapped[int] = mapped_column(
        ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True
    )
    guid: Mapped[str] = mapped_column(String(2048), primary_key=True)
    article_id: Mapped[str | None] = mapped_column(String(40))
    content_hash: Mapped[str] = mapped_column(String(64))


class SeenUrl(Base):
    """Dedupe key (canonical URL) across feeds; outlives retention."""

    __tablename__ = "seen_urls"

    canonical_url: Mapped[str] = mapped_column(String(4096), primary_key=True)
    article_id: Mapped[str | None] = mapped_column(String(40))


class Outbox(Base):
    """The alert outbox: the row is the truth, the body is rendered at each attempt."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(512), index=True)
    event: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str | None] = mapped_column(String(512))
    matched: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of aliases
    story_id: Mapped[str | None] = mapped_column(String(40), index=True)
    feed_url: Mapped[str | None] = mapped_column(String(2048))
    payload: Mapped[str | None] = mapped_column(Text)  # JSON snapshot for feed.* events
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    digest_id: Mapped[str | None] = mapped_column(String(40))
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Counter(Base):
    """Named counters shared by all instances (``cluster``: the last clustering round)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Instance(Base):
    """A running daemon: its config hash and heartbeat, to spot instances out of step."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


Index("ix_outbox_state_next", Outbox.state, Outbox.next_attempt)
Index("ix_articles_feed_guid", Article.feed_id, Article.guid)
Index("ix_articles_canonical_url", Article.canonical_url)
