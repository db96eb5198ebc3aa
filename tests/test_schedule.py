"""Table-driven tests for the pure scheduling functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from monitor.schedule import adapt_interval, next_poll

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
MIN, MAX = 1 * M, 1 * H


class Edge(random.Random):
    """A Random whose ``uniform`` always lands at a fixed fraction of the range."""

    def __init__(self, where: float) -> None:
        super().__init__(0)
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.where


LOW, MID, HIGH = 0.0, 0.5, 1.0


@pytest.mark.parametrize(
    ("interval", "errors", "retry_after", "where", "expected"),
    [
        # success: the interval, +-5% jitter
        (15 * M, 0, None, MID, 15 * M),
        (15 * M, 0, None, LOW, 15 * M * 0.95),
        (15 * M, 0, None, HIGH, 15 * M * 1.05),
        (15 * M, -3, None, MID, 15 * M),  # nonsense error count reads as none
        # errors: first at the normal pace, then doubling, +-10% jitter
        (15 * M, 1, None, MID, 15 * M),
        (15 * M, 1, None, LOW, 15 * M * 0.9),
        (15 * M, 2, None, MID, 30 * M),
        (15 * M, 2, None, HIGH, 33 * M),
        # ... capped at max_interval; past the cap, redrawn just below it
        (15 * M, 3, None, MID, 60 * M),
        (15 * M, 3, None, LOW, 54 * M),
        (15 * M, 3, None, HIGH, 60 * M),
        (15 * M, 10_000, None, MID, 60 * M),  # no overflow however long it fails
        # Retry-After is a floor, honoured up to max_interval
        (15 * M, 1, 1800.0, MID, 30 * M),
        (15 * M, 1, 600.0, LOW, 13.5 * M),  # backoff already waits longer
        (15 * M, 1, 7200.0, MID, 60 * M),
        (15 * M, 1, 1e300, MID, 60 * M),
        (15 * M, 0, 1800.0, MID, 30 * M),
        (15 * M, 1, 0.0, LOW, 13.5 * M),
        # never sooner than min_interval
        (1 * M, 1, None, LOW, 1 * M),
        (1 * M, 0, 5.0, LOW, 1 * M),
        (10 * S, 0, None, MID, 1 * M),
        # a fixed interval longer than max_interval is kept, and caps the backoff
        (2 * H, 0, None, MID, 2 * H),
        (2 * H, 3, None, MID, 2 * H),
        (2 * H, 1, 1e6, MID, 2 * H),
    ],
)
def test_next_poll(
    interval: timedelta,
    errors: int,
    retry_after: float | None,
    where: float,
    expected: timedelta,
) -> None:
    got = next_poll(
        NOW,
        interval,
        errors,
        Edge(where),
        retry_after=retry_after,
        min_interval=MIN,
        max_interval=MAX,
    )
    assert got - NOW == expected


@pytest.mark.parametrize("errors", [0, 1, 2, 3, 4, 20])
@pytest.mark.parametrize("retry_after", [None, 90.0, 5000.0])
def test_next_poll_stays_in_bounds_with_real_randomness(
    errors: int, retry_after: float | None
) -> None:
    rng = random.Random(errors)
    delays = {
        next_poll(
            NOW, 15 * M, errors, rng, retry_after=retry_after, min_interval=MIN, max_interval=MAX
        )
        - NOW
        for _ in range(200)
    }
    assert all(1 * M <= d <= 1 * H for d in delays)
    if retry_after is not None:
        assert all(d >= min(retry_after * S, 1 * H) for d in delays)
    if retry_after is None or retry_after < 3600:
        assert len(delays) > 1  # jittered, so feeds do not poll in lockstep
    else:
        assert delays == {1 * H}  # Retry-After past the cap: exactly the cap


def test_next_poll_is_reproducible_with_a_seed() -> None:
    first = [
        next_poll(NOW, 15 * M, e, random.Random(7), min_interval=MIN, max_interval=MAX)
        for e in range(5)
    ]
    again = [
        next_poll(NOW, 15 * M, e, random.Random(7), min_interval=MIN, max_interval=MAX)
        for e in range(5)
    ]
    assert first == again


BASE = 15 * M


@pytest.mark.parametrize(
    ("fixed", "gaps", "ttl", "max_age", "expected"),
    [
        # no data: the configured poll_interval
        (None, [], None, None, BASE),
        (None, [20 * M], None, None, BASE),  # one gap is not a rhythm
        # the feed's rhythm: half the median gap
        (None, [20 * M, 40 * M, 30 * M], None, None, 15 * M),
        (None, [10 * M, 10 * M, 10 * M, 6 * H], None, None, 5 * M),  # one quiet night ignored
        (None, [40 * M, 50 * M], None, None, 22.5 * M),
        (None, [0 * S, -5 * M, 20 * M], None, None, BASE),  # only positive gaps count
        # clamped to [min_interval, max_interval]
        (None, [10 * S, 20 * S, 30 * S], None, None, 1 * M),
        (None, [10 * H, 12 * H], None, None, 1 * H),
        (None, [], None, None, BASE),
        # ttl and max-age hints raise the interval, never lower it
        (None, [20 * M, 40 * M], 1800.0, None, 30 * M),
        (None, [20 * M, 40 * M], None, 2700.0, 45 * M),
        (None, [20 * M, 40 * M], 1800.0, 2700.0, 45 * M),
        (None, [20 * M, 40 * M], 60.0, 120.0, 15 * M),
        (None, [], 86400.0, None, 1 * H),
        (None, [], 1e300, None, 1 * H),  # absurd ttl: no overflow
        (None, [], float("inf"), None, 1 * H),
        (None, [], float("nan"), None, BASE),
        # a fixed interval wins over everything
        (10 * M, [10 * S, 20 * S], 3600.0, 3600.0, 10 * M),
        (2 * H, [], None, None, 2 * H),
    ],
)
def test_adapt_interval(
    fixed: timedelta | None,
    gaps: list[timedelta],
    ttl: float | None,
    max_age: float | None,
    expected: timedelta,
) -> None:
    got = adapt_interval(
        base=BASE,
        fixed=fixed,
        item_gaps=gaps,
        ttl_seconds=ttl,
        max_age=max_age,
        min_interval=MIN,
        max_interval=MAX,
    )
    assert got == expected


@pytest.mark.parametrize(("base", "expected"), [(30 * S, 1 * M), (3 * H, 1 * H), (20 * M, 20 * M)])
def test_adapt_interval_clamps_the_base(base: timedelta, expected: timedelta) -> None:
    got = adapt_interval(
        base=base,
        fixed=None,
        item_gaps=[],
        ttl_seconds=None,
        max_age=None,
        min_interval=MIN,
        max_interval=MAX,
    )
    assert got == expected
