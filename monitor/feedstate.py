"""What one poll does to a feed's stored state: a pure decision from the poll's outcome.

The coordinator records the returned values; this module never touches the database or the
network, so every branch (304, error, 410, redirect, Retry-After, health) is unit-testable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitor.model import FetchResult
from monitor.schedule import adapt_interval, next_poll

MAX_GAPS = 20  # item gaps remembered for the adaptive interval


class FeedLike(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def consecutive_errors(self) -> int: ...
    @property
    def failing_since(self) -> datetime | None: ...
    @property
    def broken(self) -> bool: ...
    @property
    def baselined(self) -> bool: ...
    @property
    def item_gaps(self) -> tuple[float, ...]: ...
    @property
    def last_new_item(self) -> datetime | None: ...
    @property
    def last_success(self) -> datetime | None: ...
    @property
    def redirected_to(self) -> str | None: ...


@dataclass(frozen=True)
class Timing:
    """The scheduling settings one feed is polled under."""

    base: timedelta
    fixed: timedelta | None
    min_interval: timedelta
    max_interval: timedelta
    broken_after: timedelta
    stale_after: timedelta


@dataclass(frozen=True)
class PollOutcome:
    """The fetch result plus, on success, what parsing produced."""

    fetch: FetchResult
    parse_error: str | None = None
    entries: int = 0  # entries read from the document
    new_items: Sequence[datetime] = ()  # published times of items never seen before
    ttl_seconds: float | None = None
    title: str | None = None


@dataclass(frozen=True)
class FeedDecision:
    values: dict[str, Any]
    health_event: str | None = None  # "feed.broken" | "feed.recovered"
    error: str | None = None  # the failure recorded, to log once
    hint: str | None = None  # e.g. a permanent redirect to put into feeds.yaml
    success: bool = False
    first_success: bool = False
    failing_since: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def failure_reason(outcome: PollOutcome) -> str | None:
    """Why this poll counts as a failure (None when it succeeded); a 200 with no entries fails."""
    f = outcome.fetch
    if f.not_modified:
        return None
    if f.error:
        return f.error
    if outcome.parse_error:
        return outcome.parse_error
    if outcome.entries == 0:
        return "feed has no entries"
    return None


def decide(
    feed: FeedLike, outcome: PollOutcome, now: datetime, timing: Timing, rng: random.Random
) -> FeedDecision:
    f = outcome.fetch
    values: dict[str, Any] = {"last_fetch": now, "last_status": f.status}
    hint = None
    if f.permanent_redirect and f.permanent_redirect != feed.redirected_to:
        values["redirected_to"] = f.permanent_redirect
        hint = f"feed moved permanently to {f.permanent_redirect}; update feeds.yaml"
    if f.discovered_from and f.url != feed.redirected_to:
        values["redirected_to"] = f.url
        hint = f"feed discovered at {f.url} from the HTML page; put that URL in feeds.yaml"
    if f.etag is not None or f.last_modified is not None:
        values["etag"] = f.etag
        values["last_modified"] = f.last_modified
    reason = failure_reason(outcome)
    if reason is None:
        return _success(feed, outcome, now, timing, rng, values, hint)
    errors = feed.consecutive_errors + 1
    failing_since = feed.failing_since or now
    values.update(last_error=reason, consecutive_errors=errors, failing_since=failing_since)
    event = None
    if f.gone:
        values.update(enabled=False, disabled_reason="410 Gone")
    interval = _interval(feed, outcome, timing)
    values["next_poll"] = next_poll(
        now,
        interval,
        errors,
        rng,
        min_interval=timing.min_interval,
        max_interval=timing.max_interval,
        retry_after=f.retry_after,
    )
    if not feed.broken and (f.gone or now - failing_since >= timing.broken_after):
        values["broken"] = True
        event = "feed.broken"
    return FeedDecision(values, event, reason, hint, failing_since=failing_since)


def _success(
    feed: FeedLike,
    outcome: PollOutcome,
    now: datetime,
    timing: Timing,
    rng: random.Random,
    values: dict[str, Any],
    hint: str | None,
) -> FeedDecision:
    values.update(last_error=None, consecutive_errors=0, failing_since=None, last_success=now)
    if outcome.title:
        values["title"] = outcome.title
    gaps = list(feed.item_gaps)
    last_new = feed.last_new_item
    for published in sorted(outcome.new_items):
        if last_new is not None and published > last_new:
            gaps.append((published - last_new).total_seconds())
        if last_new is None or published > last_new:
            last_new = published
    if outcome.new_items:
        values["last_new_item"] = last_new
        values["item_gaps"] = gaps[-MAX_GAPS:]
    if outcome.ttl_seconds is not None:
        values["ttl_seconds"] = outcome.ttl_seconds
    first = not feed.baselined and not outcome.fetch.not_modified
    if first:
        values["baselined"] = True
    interval = adapt_interval(
        base=timing.base,
        fixed=timing.fixed,
        item_gaps=[timedelta(seconds=g) for g in gaps[-MAX_GAPS:]],
        ttl_seconds=outcome.ttl_seconds,
        max_age=outcome.fetch.max_age,
        min_interval=timing.min_interval,
        max_interval=timing.max_interval,
    )
    values["interval_seconds"] = interval.total_seconds()
    values["next_poll"] = next_poll(
        now, interval, 0, rng, min_interval=timing.min_interval, max_interval=timing.max_interval
    )
    event = None
    stale = _stale(feed, last_new, gaps, now, timing)
    if feed.broken and not stale:
        values["broken"] = False
        event = "feed.recovered"
    elif not feed.broken and stale:
        values["broken"] = True
        event = "feed.broken"
        values["last_error"] = (
            f"no new item since {last_new:%Y-%m-%dT%H:%M:%SZ}" if last_new else None
        )
    return FeedDecision(values, event, None, hint, success=True, first_success=first)


def _stale(
    feed: FeedLike, last_new: datetime | None, gaps: list[float], now: datetime, timing: Timing
) -> bool:
    """No new item for stale_after and ten times the usual gap."""
    if last_new is None or not gaps:
        return False
    usual = sorted(gaps)[len(gaps) // 2]
    quiet = (now - last_new).total_seconds()
    return quiet >= timing.stale_after.total_seconds() and quiet >= 10 * usual


def _interval(feed: FeedLike, outcome: PollOutcome, timing: Timing) -> timedelta:
    return adapt_interval(
        base=timing.base,
        fixed=timing.fixed,
        item_gaps=[timedelta(seconds=g) for g in feed.item_gaps],
        ttl_seconds=None,
        max_age=None,
        min_interval=timing.min_interval,
        max_interval=timing.max_interval,
    )
