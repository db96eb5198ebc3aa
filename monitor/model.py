"""Domain records passed between the pipeline stages.

Every stage takes and returns these frozen dataclasses; none of them is an ORM row.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FetchResult:
    """What the HTTP layer learned from one request for a feed."""

    url: str  # the URL that was requested (after discovery, the feed URL)
    status: int | None  # HTTP status; None when no answer (DNS, refused, timeout, too big)
    content: bytes | None = None  # decoded body (None on 304 or error)
    content_type: str | None = None
    final_url: str | None = None  # where the body came from after redirects
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None  # precise human reason when the fetch failed
    not_modified: bool = False
    permanent_redirect: str | None = None  # target of a 301/308, to record as redirected_to
    retry_after: float | None = None  # seconds, from Retry-After on 429/503
    gone: bool = False  # 410 Gone
    max_age: float | None = None  # Cache-Control max-age, seconds
    discovered_from: str | None = None  # the HTML page URL when the feed was found by discovery
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedEntry:
    """One entry as the feed gave it (text still raw HTML where the feed had HTML)."""

    index: int
    guid: str | None
    link: str | None
    title: str | None
    summary: str | None
    content: str | None
    published: datetime | None  # aware UTC, None when the feed gave no date
    updated: datetime | None


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: tuple[ParsedEntry, ...]
    ttl_seconds: float | None = None  # from <ttl> or sy:updatePeriod/sy:updateFrequency
    bozo_reason: str | None = None  # set when the document was ill-formed but entries were read
    link: str | None = None


@dataclass(frozen=True)
class Article:
    """A normalised entry, ready to cluster, match and store."""

    feed_url: str  # configured feed url (the feed's identity)
    entry_index: int
    guid: str  # never empty: falls back to canonical url, then content hash
    url: str | None
    canonical_url: str | None
    title: str
    summary: str  # plain text
    content: str  # plain text (may equal summary)
    content_hash: str
    published: datetime  # aware UTC, clamped to fetched
    fetched: datetime  # aware UTC
    # clustering features the parse worker prepared (process_document(features=True)), so
    # the clusterer need not make them; None otherwise (the default, and read from storage)
    features: PreparedFeatures | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PreparedFeatures:
    """An article's text features that do not depend on the clusterer's memory.

    ``monitor.textfeatures.prepare`` makes them where the article is parsed (a pool
    worker) and ``unpack`` turns them back into ``TextFeatures``.  Packed into a few
    strings: they cross a process boundary and wait, for every parsed entry, until the
    cycle is stored, so many small objects would cost pickling time and memory.
    """

    title_weight: int  # the clusterer's title weight they were computed with
    terms: str  # terms in first-seen order, space-separated (a term never holds a space)
    counts: array[int]  # weighted count of each term
    surface: str  # each term's word as written, space-separated like ``terms``
    names: str  # folded phrase, as written, folded phrase, ... joined with "\x1f"
    sketch: array[int]  # shingle sketch
    kickers: tuple[str, ...]  # folded title kickers (rubric candidates)


@dataclass(frozen=True)
class Mention:
    entity: str
    alias: str  # the alias (or name) as configured that matched
    field: str  # "title" | "summary" | "content"


@dataclass(frozen=True)
class StoryDecision:
    """Where an article goes and why."""

    story_id: str | None  # None: start a new story
    method: str  # "new" | "exact" | "similar"
    score: float
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArticleSnapshot:
    """An article as an alert shows it."""

    id: str
    title: str
    url: str | None
    feed: str  # feed display name
    published: datetime
    summary: str


@dataclass(frozen=True)
class StorySnapshot:
    """A story as it stands when an alert is rendered: articles in ascending published order."""

    id: str
    title: str
    first_seen: datetime
    last_seen: datetime
    sources: int  # distinct feeds that carried its articles
    articles: tuple[ArticleSnapshot, ...]


@dataclass(frozen=True)
class FeedSnapshot:
    """A feed as a feed.broken / feed.recovered alert shows it."""

    name: str
    url: str
    last_error: str | None
    failing_since: datetime | None


@dataclass(frozen=True)
class OutboxAlert:
    """One outbox row: the alert's identity; its body is rendered at each attempt."""

    id: str  # "al_..."
    channel: str
    event: str  # "story.new" | "feed.broken" | "feed.recovered"
    entity: str | None
    matched: tuple[str, ...]  # aliases that matched
    story_id: str | None
    feed_url: str | None  # for feed.* events
    created_at: datetime
    attempts: int
    state: str  # "pending" | "sent" | "failed" | "cancelled"
    next_attempt: datetime | None
    last_error: str | None
