"""Small immutable records that storage takes (intents) and returns (views)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.model import Article, Mention, OutboxAlert, StoryDecision


@dataclass(frozen=True)
class FeedState:
    id: int
    url: str
    name: str | None
    title: str | None
    redirected_to: str | None
    enabled: bool
    disabled_reason: str | None
    etag: str | None
    last_modified: str | None
    last_fetch: datetime | None
    last_success: datetime | None
    last_status: int | None
    last_error: str | None
    consecutive_errors: int
    failing_since: datetime | None
    next_poll: datetime | None
    interval_seconds: float | None
    baselined: bool
    last_new_item: datetime | None
    item_gaps: tuple[float, ...]
    broken: bool
    polled_by: str | None
    articles: int = 0

    @property
    def display_name(self) -> str:
        return self.name or self.title or self.url


@dataclass(frozen=True)
class FeedUpdate:
    """New fetch state for one feed: only the fields given are written."""

    feed_id: int
    values: dict[str, Any]


@dataclass(frozen=True)
class NewArticle:
    id: str
    feed_id: int
    article: Article
    story_id: str
    decision: StoryDecision
    baseline: bool
    mentions: tuple[Mention, ...]


@dataclass(frozen=True)
class ArticleUpdate:
    """A changed entry (same guid, new text): new text and a fresh set of mentions."""

    article_id: str
    article: Article
    mentions: tuple[Mention, ...]


@dataclass(frozen=True)
class StoryWrite:
    id: str
    title: str | None  # None: keep the stored title
    first_seen: datetime
    last_seen: datetime
    last_published: datetime
    new: bool


@dataclass(frozen=True)
class IngestPlan:
    """Everything one tick writes, applied in one transaction (alerts with their articles)."""

    feed_updates: tuple[FeedUpdate, ...] = ()
    new_articles: tuple[NewArticle, ...] = ()
    updates: tuple[ArticleUpdate, ...] = ()
    sources: tuple[tuple[str, int, datetime], ...] = ()  # (article_id, feed_id, seen)
    stories: tuple[StoryWrite, ...] = ()
    pairs: tuple[tuple[str, str, str, bool], ...] = ()  # (story, entity, article, alerted)
    alerts: tuple[OutboxAlert, ...] = ()
    seen_guids: tuple[tuple[int, str, str | None, str], ...] = ()  # feed, guid, article, hash
    seen_urls: tuple[tuple[str, str], ...] = ()  # canonical url, article
    lease_owner: str | None = None  # write fetch state only of feeds this owner leases
    cluster_seq: int = 0  # the clustering round its new articles belong to


@dataclass(frozen=True)
class KnownKeys:
    """What the database already knows about a batch's dedupe keys."""

    guids: dict[tuple[int, str], tuple[str | None, str]] = field(default_factory=dict)
    urls: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredArticle:
    """An article as the stories view and the clusterer's warm start need it."""

    id: str
    story_id: str
    feed: str
    feed_url: str
    article: Article
    method: str
    score: float
    shared: tuple[str, ...]
    entities: tuple[str, ...]


@dataclass(frozen=True)
class StoryView:
    id: str
    title: str
    first_seen: datetime
    last_seen: datetime
    sources: int
    entities: tuple[str, ...]
    articles: tuple[StoredArticle, ...]
