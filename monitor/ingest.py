"""The ingest planner: dedupe, cluster, match and apply the alert rule for one tick.

It reads what storage already knows through a small Protocol and returns one
``IngestPlan`` that storage writes in a single transaction (alerts with their articles).
Articles are handled in a fixed order (published, feed URL, entry index) so that results
are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from monitor.ids import new_id
from monitor.model import Article, Mention, OutboxAlert, StoryDecision
from storage.records import (
    ArticleUpdate,
    IngestPlan,
    KnownKeys,
    NewArticle,
    StoryWrite,
)


class KeyStore(Protocol):
    def known_keys(self, guids: Iterable[tuple[int, str]], urls: Iterable[str]) -> KnownKeys: ...
    def story_pairs(self, story_ids: Iterable[str]) -> set[tuple[str, str]]: ...
    def article_stories(self, article_ids: Iterable[str]) -> dict[str, str]: ...


class Placer(Protocol):
    """The clusterer as the planner uses it."""

    def place(
        self, article: Article, entities: Sequence[str], new_story_id: Callable[[], str]
    ) -> StoryDecision: ...
    def story_title(self, story_id: str) -> str | None: ...


class Matcher(Protocol):
    def match(self, title: str, summary: str, content: str) -> list[Mention]: ...


@dataclass(frozen=True)
class FeedBatch:
    feed_id: int
    feed_url: str
    tags: frozenset[str]
    baseline: bool  # a first poll without alert_backlog: store and match, never alert
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class ChannelRule:
    name: str
    entities: frozenset[str] | None  # None: every entity
    tags: frozenset[str] | None  # None: every feed

    def wants(self, entity: str, feed_tags: frozenset[str]) -> bool:
        if self.entities is not None and entity not in self.entities:
            return False
        return self.tags is None or bool(self.tags & feed_tags)


@dataclass
class IngestStats:
    new: int = 0
    duplicates: int = 0
    updated: int = 0
    alerts: int = 0
    new_by_feed: dict[int, list[datetime]] = field(default_factory=dict)


def order_key(item: tuple[FeedBatch, Article]) -> tuple[datetime, str, int]:
    batch, art = item
    return (art.published, batch.feed_url, art.entry_index)


def plan_ingest(
    batches: Sequence[FeedBatch],
    store: KeyStore,
    clusterer: Placer,
    matcher: Matcher,
    channels: Sequence[ChannelRule],
    *,
    now: datetime,
    window: timedelta,
) -> tuple[IngestPlan, IngestStats]:
    items = sorted(((b, a) for b in batches for a in b.articles), key=order_key)
    known = store.known_keys(
        [(b.feed_id, a.guid) for b, a in items],
        [a.canonical_url for _, a in items if a.canonical_url],
    )
    guids = dict(known.guids)
    urls = dict(known.urls)
    stats = IngestStats()
    new: list[tuple[FeedBatch, NewArticle]] = []
    updates: list[tuple[FeedBatch, ArticleUpdate]] = []
    sources: list[tuple[str, int, datetime]] = []
    seen_guids: list[tuple[int, str, str | None, str]] = []
    seen_urls: list[tuple[str, str]] = []
    for batch, art in items:
        key = (batch.feed_id, art.guid)
        if key in guids:
            aid, old_hash = guids[key]
            if aid is not None and old_hash != art.content_hash and aid not in _ids(new):
                mentions = tuple(matcher.match(art.title, art.summary, art.content))
                updates.append((batch, ArticleUpdate(aid, art, mentions)))
                guids[key] = (aid, art.content_hash)
                stats.updated += 1
            else:
                stats.duplicates += 1
            continue
        if art.canonical_url and art.canonical_url in urls:
            aid = urls[art.canonical_url]
            guids[key] = (aid, art.content_hash)
            seen_guids.append((batch.feed_id, art.guid, aid, art.content_hash))
            if aid is not None:
                sources.append((aid, batch.feed_id, art.fetched))
            stats.duplicates += 1
            continue
        aid = new_id("a")
        mentions = tuple(matcher.match(art.title, art.summary, art.content))
        entities = sorted({m.entity for m in mentions})
        decision = clusterer.place(art, entities, lambda: new_id("s"))
        assert decision.story_id is not None
        new.append(
            (
                batch,
                NewArticle(
                    aid, batch.feed_id, art, decision.story_id, decision, batch.baseline, mentions
                ),
            )
        )
        guids[key] = (aid, art.content_hash)
        seen_guids.append((batch.feed_id, art.guid, aid, art.content_hash))
        if art.canonical_url:
            urls[art.canonical_url] = aid
            seen_urls.append((art.canonical_url, aid))
        stats.new += 1
        stats.new_by_feed.setdefault(batch.feed_id, []).append(art.published)
    update_stories = store.article_stories(
        [u.article_id for _, u in updates] + [aid for aid, _, _ in sources]
    )
    pairs, alerts = _alert_rule(new, updates, update_stories, store, channels, now, window)
    stats.alerts = len(alerts)
    plan = IngestPlan(
        new_articles=tuple(n for _, n in new),
        updates=tuple(u for _, u in updates),
        sources=tuple(sources),
        stories=_story_writes(new, sources, update_stories, clusterer),
        pairs=tuple(pairs),
        alerts=tuple(alerts),
        seen_guids=tuple(seen_guids),
        seen_urls=tuple(seen_urls),
    )
    return plan, stats


def _ids(new: list[tuple[FeedBatch, NewArticle]]) -> set[str]:
    return {n.id for _, n in new}


def _alert_rule(
    new: list[tuple[FeedBatch, NewArticle]],
    updates: list[tuple[FeedBatch, ArticleUpdate]],
    update_stories: dict[str, str],
    store: KeyStore,
    channels: Sequence[ChannelRule],
    now: datetime,
    window: timedelta,
) -> tuple[list[tuple[str, str, str, bool]], list[OutboxAlert]]:
    """A (entity, story) pair alerts once: on the first non-baseline article mentioning it."""
    candidates: list[tuple[FeedBatch, str, str, Article, tuple[Mention, ...], bool]] = [
        (b, n.id, n.story_id, n.article, n.mentions, n.baseline) for b, n in new
    ] + [
        (b, u.article_id, update_stories[u.article_id], u.article, u.mentions, b.baseline)
        for b, u in updates
        if u.article_id in update_stories
    ]
    existing = store.story_pairs({c[2] for c in candidates})
    pairs: list[tuple[str, str, str, bool]] = []
    alerts: list[OutboxAlert] = []
    for batch, aid, story_id, art, mentions, baseline in candidates:
        by_entity: dict[str, list[str]] = {}
        for m in mentions:
            by_entity.setdefault(m.entity, [])
            if m.alias not in by_entity[m.entity]:
                by_entity[m.entity].append(m.alias)
        for entity, aliases in sorted(by_entity.items()):
            if (story_id, entity) in existing:
                continue
            existing.add((story_id, entity))
            fire = not baseline and art.published >= now - window
            pairs.append((story_id, entity, aid, fire))
            if not fire:
                continue
            for ch in channels:
                if ch.wants(entity, batch.tags):
                    alerts.append(
                        new_alert(
                            ch.name,
                            "story.new",
                            now,
                            entity=entity,
                            matched=tuple(aliases),
                            story_id=story_id,
                        )
                    )
    return pairs, alerts


def new_alert(
    channel: str,
    event: str,
    now: datetime,
    *,
    entity: str | None = None,
    matched: tuple[str, ...] = (),
    story_id: str | None = None,
    feed_url: str | None = None,
) -> OutboxAlert:
    """A fresh pending outbox row, due at once."""
    return OutboxAlert(
        id=new_id("al"),
        channel=channel,
        event=event,
        entity=entity,
        matched=matched,
        story_id=story_id,
        feed_url=feed_url,
        created_at=now,
        attempts=0,
        state="pending",
        next_attempt=now,
        last_error=None,
    )


def _story_writes(
    new: list[tuple[FeedBatch, NewArticle]],
    sources: list[tuple[str, int, datetime]],
    update_stories: dict[str, str],
    clusterer: Placer,
) -> tuple[StoryWrite, ...]:
    spans: dict[str, tuple[datetime, datetime, datetime, bool]] = {}

    def touch(story_id: str, fetched: datetime, published: datetime, created: bool) -> None:
        if story_id in spans:
            first, last, pub, was_new = spans[story_id]
            spans[story_id] = (
                min(first, fetched),
                max(last, fetched),
                max(pub, published),
                was_new,
            )
        else:
            spans[story_id] = (fetched, fetched, published, created)

    for _, n in new:
        touch(
            n.story_id,
            n.article.fetched,
            n.article.published,
            n.decision.method == "new" and n.story_id not in spans,
        )
    by_article = {n.id: n.story_id for _, n in new}
    extra = dict(update_stories)
    for aid, _feed, seen in sources:
        sid = by_article.get(aid) or extra.get(aid)
        if sid is not None:
            touch(sid, seen, seen, False)
    return tuple(
        StoryWrite(sid, clusterer.story_title(sid), first, last, pub, created)
        for sid, (first, last, pub, created) in spans.items()
    )
