"""One poll cycle: claim -> fetch -> parse/normalise (process pool) -> decide ->
cluster/match -> store.

The coordinator sequences the stages and decides nothing itself: which feeds, from the
leases of ``claims``; fetch state from ``feedstate.decide``; what to write from
``ingest.plan_ingest``. Feeds are claimed as fetch slots free up, and finished feeds are
stored in slices (each slice one transaction: fetch state, articles, stories, mentions,
alerts) while the next ones are fetched, so memory stays bounded however many feeds are
due. A cycle of up to ``STORE_SLICE`` feeds is one slice, clustered in a fixed order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.claims import Claims, keeping_leases
from monitor.clustercache import ClusterCache
from monitor.config import Config, FeedConfig
from monitor.errors import ParseError
from monitor.feedstate import FeedDecision, PollOutcome, Timing, decide
from monitor.fetch import Fetcher
from monitor.ingest import (
    ChannelRule,
    FeedBatch,
    IngestStats,
    Matcher,
    new_alert,
    plan_ingest,
)
from monitor.metrics import METRICS
from monitor.model import FetchResult, OutboxAlert
from storage.records import FeedState, FeedUpdate
from storage.store import Store

if TYPE_CHECKING:
    from monitor.normalize import ProcessedFeed

log = logging.getLogger("monitor.poll")

# a hostile document can keep feedparser's fallback parser busy for minutes: a pool worker
# gives up on it after this many times the fetch timeout
PARSE_TIMEOUT_FACTOR = 2
# feeds per store transaction: small enough that storing overlaps parsing and bounds the
# parsed entries held; a cycle this small is one slice, clustered in a fixed order
STORE_SLICE = 50


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Engine:
    """The long-lived parts a cycle needs; the daemon swaps ``config``/``matcher`` on reload."""

    config: Config
    store: Store
    clusterer: ClusterCache
    matcher: Matcher
    executor: Executor | None = None
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], datetime] = utcnow


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

    def add(self, other: CycleReport) -> None:
        self.polled += other.polled
        self.failed += other.failed
        self.not_modified += other.not_modified
        st, o = self.stats, other.stats
        st.new, st.duplicates, st.updated = (
            st.new + o.new,
            st.duplicates + o.duplicates,
            st.updated + o.updated,
        )
        st.alerts += o.alerts
        st.new_by_feed.update(o.new_by_feed)


async def run_cycle(engine: Engine, claims: Claims) -> CycleReport:
    """Poll the feeds ``claims`` hands out, once each, and store what the cycle learned."""
    started = time.monotonic()
    s = engine.config.settings
    report = CycleReport()
    lease_seconds = claims.lease.total_seconds()
    try:
        async with (
            Fetcher(
                concurrency=s.concurrency,
                per_host=s.per_host,
                timeout=s.timeout.total_seconds(),
                max_bytes=s.max_feed_bytes,
                user_agent=s.user_agent,
            ) as fetcher,
            keeping_leases(claims, every=max(1.0, lease_seconds / 3)),
        ):
            await _stream(engine, claims, fetcher, s.concurrency, report)
    except BaseException:
        await asyncio.to_thread(claims.release)
        raise
    report.seconds = time.monotonic() - started
    METRICS.cycle_duration_seconds.observe(report.seconds)
    return report


async def _stream(
    engine: Engine, claims: Claims, fetcher: Fetcher, slots: int, report: CycleReport
) -> None:
    """Keep ``slots`` feeds in flight, claiming more as they finish; store finished feeds
    a slice at a time while the next ones are fetched."""
    in_flight: set[asyncio.Task[FeedPoll]] = set()
    finished: list[FeedPoll] = []
    storing: asyncio.Task[CycleReport] | None = None
    exhausted = False
    try:
        while True:
            if storing is not None and storing.done():
                report.add(storing.result())
                storing = None
            if storing is None and len(finished) >= STORE_SLICE:
                # clustering and the write are CPU and disk work: off the event loop
                storing = asyncio.create_task(
                    asyncio.to_thread(store_slice, engine, claims, finished)
                )
                finished = []
            # a full slice waiting for the store: claim nothing (bounds what is held)
            backlog = len(finished) >= STORE_SLICE
            free = slots - len(in_flight)
            # refill in steps (a claim is a transaction), or at once when idle
            if not exhausted and not backlog and (free >= max(1, slots // 4) or not in_flight):
                feeds = await asyncio.to_thread(claims.claim, free)
                exhausted = len(feeds) < free
                in_flight.update(asyncio.create_task(poll_one(engine, fetcher, f)) for f in feeds)
            if not in_flight and not backlog:
                break
            waiting: set[asyncio.Future[Any]] = set(in_flight)
            if storing is not None:
                waiting.add(storing)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not storing:
                    in_flight.discard(task)
                    finished.append(task.result())
        if storing is not None:
            report.add(await storing)
        if finished:
            report.add(await asyncio.to_thread(store_slice, engine, claims, finished))
    finally:
        for task in in_flight:
            task.cancel()
        if storing is not None and not storing.done():
            await asyncio.wait([storing])  # a write in progress finishes (or fails) whole


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
        replace(fetched, content=None),  # parsed: the body need not wait for the store
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
        "max_bytes": engine.config.settings.max_feed_bytes,  # bounds unlabelled gzip too
    }
    # imported by the first body to parse: a cycle of 304s does not load the parsers, and
    # with a pool only the workers load them
    if engine.executor is None:
        from monitor.normalize import process_document

        return process_document(feed_url, fetched.content, **kwargs)
    from monitor.parsejob import parse_with_limit  # the pool's job: a lean module

    limit = PARSE_TIMEOUT_FACTOR * engine.config.settings.timeout.total_seconds()
    job = functools.partial(parse_with_limit, limit, feed_url, fetched.content, kwargs)
    return await asyncio.get_running_loop().run_in_executor(engine.executor, job)


def store_slice(engine: Engine, claims: Claims, polls: Sequence[FeedPoll]) -> CycleReport:
    """Store finished feeds under the clustering lock, only those still leased to us."""
    ids = [p.feed.id for p in polls]
    with engine.store.cluster_lock():
        owned = claims.keep_only_owned(ids)
        kept = [p for p in polls if p.feed.id in owned]
        seq = engine.clusterer.begin_round()
        report = store_cycle(engine, kept, lease_owner=claims.owner, cluster_seq=seq)
        engine.clusterer.end_round(seq, stored_new=report.stats.new > 0)
    claims.done(ids)  # on failure they stay held: the cycle gives their leases back
    return report


def store_cycle(
    engine: Engine,
    polls: Sequence[FeedPoll],
    *,
    lease_owner: str | None = None,
    cluster_seq: int = 0,
) -> CycleReport:
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
        values["polled_by"] = engine.store.owner
        updates.append(FeedUpdate(p.feed.id, values))
        _log_poll(p, decision)
        report.failed += decision.error is not None
        report.not_modified += p.outcome.fetch.not_modified
        if decision.health_event:
            health.extend(health_alerts(cfg, p.feed.url, decision.health_event, now))
    plan = replace(
        plan,
        feed_updates=tuple(updates),
        alerts=plan.alerts + tuple(health),
        lease_owner=lease_owner,
        cluster_seq=cluster_seq,
    )
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
