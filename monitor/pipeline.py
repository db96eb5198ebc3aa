"""One poll cycle: fetch -> parse/normalise (process pool) -> decide -> cluster/match -> store.

The coordinator sequences the stages and decides nothing itself: fetch state comes from
``feedstate.decide``, what to write from ``ingest.plan_ingest``; storage writes the whole
tick (fetch state, articles, stories, mentions, alerts) in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from monitor.config import Config, FeedConfig
from monitor.errors import ParseError
from monitor.feedstate import FeedDecision, PollOutcome, Timing, decide
from monitor.fetch import Fetcher
from monitor.ingest import (
    ChannelRule,
    FeedBatch,
    IngestStats,
    Matcher,
    Placer,
    new_alert,
    plan_ingest,
)
from monitor.metrics import METRICS
from monitor.model import FetchResult, OutboxAlert
from monitor.normalize import ProcessedFeed, process_document
from storage.records import FeedState, FeedUpdate
from storage.store import Store

log = logging.getLogger("monitor.poll")

# a hostile document can keep feedparser's fallback parser busy for minutes: a pool worker
# gives up on it after this many times the fetch timeout
PARSE_TIMEOUT_FACTOR = 2


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Engine:
    """The long-lived parts a cycle needs; the daemon swaps ``config``/``matcher`` on reload."""

    config: Config
    store: Store
    clusterer: Placer
    matcher: Matcher
    executor: Executor | None = None
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], datetime] = utcnow
    host_id: str | None = None


@dataclass(frozen=True)
class FeedPoll:
    feed: FeedState
    outcome: PollOutcome
    processed: ProcessedFeed | None


@dataclass
class CycleReport:
    polled: int = 0
    failed: int = 0
    not_modified: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    seconds: float = 0.0


async def run_cycle(engine: Engine, feeds: Sequence[FeedState]) -> CycleReport:
    """Poll ``feeds`` once each and store everything the cycle learned."""
    started = time.monotonic()
    s = engine.config.settings
    async with Fetcher(
        concurrency=s.concurrency,
        per_host=s.per_host,
        timeout=s.timeout.total_seconds(),
        max_bytes=s.max_feed_bytes,
        user_agent=s.user_agent,
    ) as fetcher:
        polls = await asyncio.gather(*(poll_one(engine, fetcher, f) for f in feeds))
    # clustering and the big write are CPU and disk work: keep them off the event loop
    report = await asyncio.to_thread(store_cycle, engine, polls)
    report.seconds = time.monotonic() - started
    METRICS.cycle_duration_seconds.observe(report.seconds)
    return report


async def poll_one(engine: Engine, fetcher: Fetcher, feed: FeedState) -> FeedPoll:
    fetched = await fetcher.fetch(
        feed.redirected_to or feed.url, etag=feed.etag, last_modified=feed.last_modified
    )
    METRICS.fetches_total.inc(status=str(fetched.status) if fetched.status else "error")
    if fetched.content is None or fetched.error:
        return FeedPoll(feed, PollOutcome(fetched), None)
    now = engine.clock()
    try:
        processed = await _process(engine, feed.url, fetched, now)
    except ParseError as exc:
        METRICS.parse_failures_total.inc()
        return FeedPoll(feed, PollOutcome(fetched, parse_error=str(exc)), None)
    except Exception as exc:  # a parser bug must not stop the cycle: log it loudly
        log.exception("parse_crashed feed=%s", feed.url)
        METRICS.parse_failures_total.inc()
        return FeedPoll(feed, PollOutcome(fetched, parse_error=f"internal error: {exc!r}"), None)
    if processed.bozo_reason:
        log.info(
            "feed_ill_formed feed=%s reason=%r (entries still read)",
            feed.url,
            processed.bozo_reason,
        )
    outcome = PollOutcome(
        fetched,
        entries=len(processed.articles),
        ttl_seconds=processed.ttl_seconds,
        title=processed.title,
    )
    return FeedPoll(feed, outcome, processed)


async def _process(
    engine: Engine, feed_url: str, fetched: FetchResult, now: datetime
) -> ProcessedFeed:
    assert fetched.content is not None
    kwargs: dict[str, Any] = {
        "url": fetched.final_url or fetched.url,
        "content_type": fetched.content_type,
        "headers": fetched.headers,
        "fetched": now,
    }
    if engine.executor is None:
        return process_document(feed_url, fetched.content, **kwargs)
    limit = PARSE_TIMEOUT_FACTOR * engine.config.settings.timeout.total_seconds()
    job = functools.partial(parse_with_limit, limit, feed_url, fetched.content, kwargs)
    return await asyncio.get_running_loop().run_in_executor(engine.executor, job)


def parse_with_limit(
    limit: float, feed_url: str, content: bytes, kwargs: dict[str, Any]
) -> ProcessedFeed:
    """Run in a pool worker: parse, but stop after ``limit`` seconds of the worker's own time.

    The clock starts when the worker picks the job up (time in the queue does not count)
    and the alarm really interrupts a runaway parse, freeing the worker for the next feed.
    """

    def expired(signum: int, frame: object) -> None:
        raise ParseError(f"parsing took longer than {limit:.0f}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return process_document(feed_url, content, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def store_cycle(engine: Engine, polls: Sequence[FeedPoll]) -> CycleReport:
    """Decide fetch state, plan the ingest and write it all in one transaction."""
    cfg = engine.config
    now = engine.clock()
    report = CycleReport(polled=len(polls))
    batches: list[FeedBatch] = []
    for p in polls:
        feed_cfg = cfg.feed_by_url(p.feed.url)
        if p.processed is not None and p.processed.articles:
            first = not p.feed.baselined
            batches.append(
                FeedBatch(
                    feed_id=p.feed.id,
                    feed_url=p.feed.url,
                    tags=frozenset(feed_cfg.tags if feed_cfg else ()),
                    baseline=first and not cfg.settings.alert_backlog,
                    articles=tuple(p.processed.articles),
                )
            )
    plan, stats = plan_ingest(
        batches,
        engine.store.articles,
        engine.clusterer,
        engine.matcher,
        channel_rules(cfg),
        now=now,
        window=cfg.settings.story_window,
    )
    report.stats = stats
    updates: list[FeedUpdate] = []
    health: list[OutboxAlert] = []
    for p in polls:
        outcome = replace(p.outcome, new_items=tuple(stats.new_by_feed.get(p.feed.id, ())))
        decision = decide(
            p.feed, outcome, now, timing_for(cfg, cfg.feed_by_url(p.feed.url)), engine.rng
        )
        values = dict(decision.values)
        if engine.host_id:
            values["polled_by"] = engine.host_id
        updates.append(FeedUpdate(p.feed.id, values))
        _log_poll(p, decision)
        report.failed += decision.error is not None
        report.not_modified += p.outcome.fetch.not_modified
        if decision.health_event:
            health.extend(health_alerts(cfg, p.feed.url, decision.health_event, now))
    plan = replace(plan, feed_updates=tuple(updates), alerts=plan.alerts + tuple(health))
    engine.store.articles.apply(plan)
    METRICS.articles_stored_total.inc(stats.new + stats.updated)
    return report


def _log_poll(p: FeedPoll, d: FeedDecision) -> None:
    f = p.outcome.fetch
    if d.error is not None:
        log.warning("poll_failed feed=%s status=%s error=%r", p.feed.url, f.status, d.error)
    else:
        log.debug("polled feed=%s status=%s entries=%d", p.feed.url, f.status, p.outcome.entries)
    if d.hint:
        log.warning("feed_moved feed=%s hint=%r", p.feed.url, d.hint)
    if f.gone:
        log.warning("feed_disabled feed=%s reason='410 Gone'", p.feed.url)
    if d.health_event:
        log.warning("%s feed=%s", d.health_event.replace(".", "_"), p.feed.url)


def timing_for(cfg: Config, feed: FeedConfig | None) -> Timing:
    s = cfg.settings
    return Timing(
        base=s.poll_interval,
        fixed=feed.interval if feed else None,
        min_interval=s.min_interval,
        max_interval=s.max_interval,
        broken_after=s.broken_after,
        stale_after=s.stale_after,
    )


def channel_rules(cfg: Config) -> list[ChannelRule]:
    return [
        ChannelRule(
            name=ch.name,
            entities=frozenset(ch.entities) if ch.entities is not None else None,
            tags=frozenset(ch.tags) if ch.tags else None,
        )
        for ch in cfg.alerts
    ]


def health_alerts(cfg: Config, feed_url: str, event: str, now: datetime) -> list[OutboxAlert]:
    """feed.broken / feed.recovered go to every channel with ``feed_health: true``."""
    return [
        new_alert(ch.name, event, now, feed_url=feed_url) for ch in cfg.alerts if ch.feed_health
    ]
