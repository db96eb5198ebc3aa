"""The database schema: SQLAlchemy Core tables on one ``metadata``.

Core only, no ORM mapping: importing ``sqlalchemy.orm`` and configuring mappers would cost
every command ~0.1 s of start-up, for objects storage never needs.
Only ``storage`` sees these rows; the rest of the code gets records from ``monitor.model``.
Times are stored as naive UTC (portable across SQLite and PostgreSQL) and come back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

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


metadata = MetaData(naming_convention=NAMING)

# A configured feed and its fetch state; the configured URL is its identity.
feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", String(2048), nullable=False, unique=True),
    Column("name", String(512)),
    Column("title", String(1024)),
    Column("redirected_to", String(2048)),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", String(512)),
    Column("etag", String(1024)),
    Column("last_modified", String(256)),
    Column("last_fetch", UTCDateTime()),
    Column("last_success", UTCDateTime()),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("consecutive_errors", Integer, nullable=False, default=0),
    Column("failing_since", UTCDateTime()),
    Column("next_poll", UTCDateTime(), index=True),
    Column("interval_seconds", Float),
    Column("ttl_seconds", Float),
    Column("baselined", Boolean, nullable=False, default=False),
    Column("last_new_item", UTCDateTime()),
    Column("item_gaps", Text),  # JSON list of recent gaps (seconds)
    Column("broken", Boolean, nullable=False, default=False),
    Column("polled_by", String(256)),
    Column("created_at", UTCDateTime(), nullable=False),
    # the instance fetching the feed now, and until when (see monitor/claims.py)
    Column("lease_owner", String(256)),
    Column("lease_until", UTCDateTime()),
)

stories = Table(
    "stories",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("title", Text, nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False, index=True),
    Column("last_published", UTCDateTime(), nullable=False),
    Column("sources", Integer, nullable=False, default=1),
)

articles = Table(
    "articles",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "feed_id",
        Integer,
        ForeignKey("feeds.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "story_id",
        String(40),
        ForeignKey("stories.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("guid", String(2048), nullable=False),
    Column("url", String(4096)),
    Column("canonical_url", String(4096)),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("published", UTCDateTime(), nullable=False, index=True),
    Column("fetched", UTCDateTime(), nullable=False),
    Column("entry_index", Integer, nullable=False, default=0),
    Column("baseline", Boolean, nullable=False, default=False),
    Column("reason_method", String(16), nullable=False),
    Column("reason_score", Float, nullable=False),
    Column("reason_shared", Text, nullable=False, default="[]"),  # JSON list
    # the clustering round that stored it: instances replay the rounds they did not see
    Column("cluster_seq", BigInteger, nullable=False, default=0, index=True),
    Index("ix_articles_feed_guid", "feed_id", "guid"),
    Index("ix_articles_canonical_url", "canonical_url"),
)

# Every feed that carried an article (counted in a story's ``sources``).
article_sources = Table(
    "article_sources",
    metadata,
    Column(
        "article_id", String(40), ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "feed_id",
        Integer,
        ForeignKey("feeds.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column("first_seen", UTCDateTime(), nullable=False),
)

mentions = Table(
    "mentions",
    metadata,
    Column(
        "article_id", String(40), ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("entity", String(512), primary_key=True, index=True),
    Column("alias", String(512), primary_key=True),
    Column("field", String(16), primary_key=True),
)

# A (story, entity) pair that was recorded; its existence means it never alerts again.
story_entities = Table(
    "story_entities",
    metadata,
    Column("story_id", String(40), ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True),
    Column("entity", String(512), primary_key=True, index=True),
    Column("first_article_id", String(40), nullable=False),
    Column("alerted", Boolean, nullable=False, default=False),
)

# Dedupe key (feed, guid); outlives retention so pruned items never come back.
seen_guids = Table(
    "seen_guids",
    metadata,
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True),
    Column("guid", String(2048), primary_key=True),
    Column("article_id", String(40)),
    Column("content_hash", String(64), nullable=False),
)

# Dedupe key (canonical URL) across feeds; outlives retention.
seen_urls = Table(
    "seen_urls",
    metadata,
    Column("canonical_url", String(4096), primary_key=True),
    Column("article_id", String(40)),
)

# The alert outbox: the row is the truth, the body is rendered at each attempt.
outbox = Table(
    "outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(512), nullable=False, index=True),
    Column("event", String(32), nullable=False),
    Column("entity", String(512)),
    Column("matched", Text, nullable=False, default="[]"),  # JSON list of aliases
    Column("story_id", String(40), index=True),
    Column("feed_url", String(2048)),
    Column("payload", Text),  # JSON snapshot for feed.* events
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt", UTCDateTime()),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime()),
    Column("digest_id", String(40)),
    Column("lease_owner", String(256)),
    Column("lease_until", UTCDateTime()),
    Index("ix_outbox_state_next", "state", "next_attempt"),
)

# Named counters shared by all instances (``cluster``: the last clustering round).
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False, default=0),
)

# A running daemon: its config hash and heartbeat, to spot instances out of step.
instances = Table(
    "instances",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("config_hash", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat", UTCDateTime(), nullable=False, index=True),
)
