"""When to poll a feed next. Pure: time and randomness are parameters, nothing is read.

Two questions, two functions:

* :func:`adapt_interval` -- how often this feed deserves a poll when all is well,
  learned from its own publishing rhythm and its caching hints.
* :func:`next_poll` -- given that interval and how the last poll went, the moment of
  the next one (backoff on errors, Retry-After, jitter).

The storage layer keeps the result as ``next_poll_at``; the daemon only asks which
feeds are due, so a restart loses nothing.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

SUCCESS_JITTER = 0.05  # +-5%: enough to spread feeds added together over time
ERROR_JITTER = 0.10  # +-10%: failing feeds of one host must not retry in lockstep
MAX_DOUBLINGS = 30  # beyond this the cap has long been reached; avoids huge numbers
MIN_GAPS = 2  # one gap between items says little about a feed's rhythm
RHYTHM_FRACTION = 0.5  # poll twice per usual gap: a new item waits a quarter gap on average


def next_poll(
    now: datetime,
    interval: timedelta,
    consecutive_errors: int,
    rng: random.Random,
    *,
    min_interval: timedelta,
    max_interval: timedelta,
    retry_after: float | None = None,
) -> datetime:
    """The time of the next poll.

    After a success: ``interval`` with +-5% jitter, so feeds that were added together
    drift apart instead of hitting servers in bursts.

    After the n-th consecutive error: ``interval * 2**(n-1)`` with +-10% jitter (the
    first failure may be a blip, so it is retried at the normal pace; a persistent
    one is retried ever more rarely), capped at ``max_interval`` (or at ``interval``
    if a fixed interval is longer) so a broken feed is still noticed when it recovers.
    A delay that the jitter pushes past the cap is redrawn just below it, so capped
    feeds stay spread out too.

    ``retry_after`` (seconds, from a 429/503) is a floor: the server asked us not to
    come back sooner. It is honoured up to the same cap. Nothing is ever scheduled
    sooner than ``min_interval``.
    """
    base = max(interval, min_interval)
    cap = max(max_interval, base)
    errors = max(0, consecutive_errors)
    if errors == 0:
        delay = base * rng.uniform(1 - SUCCESS_JITTER, 1 + SUCCESS_JITTER)
    else:
        backoff = base * 2 ** min(errors - 1, MAX_DOUBLINGS)
        delay = min(backoff, cap) * rng.uniform(1 - ERROR_JITTER, 1 + ERROR_JITTER)
    if delay > cap:
        delay = cap * rng.uniform(1 - ERROR_JITTER, 1)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, timedelta(seconds=min(retry_after, cap.total_seconds())))
    return now + max(delay, min_interval)


def adapt_interval(
    *,
    base: timedelta,
    fixed: timedelta | None,
    item_gaps: Sequence[timedelta],
    ttl_seconds: float | None,
    max_age: float | None,
    min_interval: timedelta,
    max_interval: timedelta,
) -> timedelta:
    """How often to poll a healthy feed.

    * A fixed per-feed ``interval`` from the config wins: the user asked for it.
    * Otherwise the feed's own rhythm: half the median gap between its recent new
      items (at least two gaps are needed). The median ignores a single burst or
      a holiday; half a gap means a new item waits about a quarter gap on average.
    * With no rhythm yet, ``base`` (``poll_interval``).
    * ``ttl_seconds`` (``<ttl>``, ``sy:updatePeriod``) and ``max_age`` (Cache-Control)
      are the publisher saying the document will not change sooner, so they raise
      the interval, never lower it.
    * The result is clamped to ``[min_interval, max_interval]``: never hammer a
      busy feed, never neglect a quiet one.
    """
    if fixed is not None:
        return fixed
    gaps = [g.total_seconds() for g in item_gaps if g > timedelta(0)]
    if len(gaps) >= MIN_GAPS:
        seconds = statistics.median(gaps) * RHYTHM_FRACTION
    else:
        seconds = base.total_seconds()
    for hint in (ttl_seconds, max_age):
        if hint is not None and hint > seconds:
            seconds = hint
    seconds = min(seconds, max_interval.total_seconds())  # before timedelta(): ttl may be absurd
    return max(timedelta(seconds=seconds), min_interval)
