"""The feeds a cycle works on, leased from the database a few at a time.

A claim is a short committed transaction (see ``FeedRepo.claim``): no row lock is held
while fetching. The lease runs ``timeout`` + 10 s and a keeper extends it while the
feed is fetched, parsed and waiting to be stored; results are written only for feeds
whose lease this instance still holds. A crashed instance's leases simply run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from storage.engine import error_line
from storage.records import FeedState
from storage.store import Store

log = logging.getLogger("monitor.claims")

LEASE_SLACK = timedelta(seconds=10)


def lease_for(timeout: timedelta) -> timedelta:
    return timeout + LEASE_SLACK


@dataclass
class Claims:
    """One cycle's source of feeds: ``due_only`` False polls every feed (``monitor poll``)."""

    store: Store
    urls: Sequence[str]
    lease: timedelta
    clock: Callable[[], datetime]
    due_only: bool = True
    held: set[int] = field(default_factory=set)
    started: datetime | None = None  # feeds fetched since then are not claimed again
    stopping: Callable[[], bool] = lambda: False  # the daemon is stopping: claim no more
    _own: set[str] = field(default_factory=set)
    _foreign: set[int] | None = None

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    @property
    def owner(self) -> str:
        return self.store.owner

    def claim(self, limit: int) -> list[FeedState]:
        """Lease up to ``limit`` feeds of this instance's config."""
        if self.stopping():
            return []
        if self._foreign is None:  # stored feeds this config does not have (once a cycle)
            self._own = set(self.urls)
            self._foreign = {i for url, i in self.store.feeds.ids().items() if url not in self._own}
        feeds: list[FeedState] = []
        while len(feeds) < limit:
            batch = self.store.feeds.claim(
                self.clock(),
                owner=self.owner,
                limit=limit - len(feeds),
                lease=self.lease,
                due_only=self.due_only,
                not_since=self.started,
                exclude=self._foreign,
            )
            feeds.extend(f for f in batch if f.url in self._own)
            # feeds another instance's config added meanwhile: hand back, skip from now on
            foreign = [f.id for f in batch if f.url not in self._own]
            if not foreign:
                break
            self._foreign.update(foreign)
            self.store.feeds.release(foreign, self.owner)
        self.held.update(f.id for f in feeds)
        return feeds

    def keep_only_owned(self, ids: Collection[int]) -> set[int]:
        """Of ``ids``, those still leased to this instance (call under the cluster lock)."""
        owned = self.store.feeds.owned(ids, self.owner)
        lost = set(ids) - owned
        if lost:
            log.warning("lease_lost feeds=%d (another instance took them over)", len(lost))
        return owned

    def done(self, ids: Collection[int]) -> None:
        """Stored (the write ended the leases) or dropped: no longer kept alive."""
        self.held.difference_update(ids)

    def extend(self) -> None:
        held = list(self.held)
        self.store.feeds.extend(held, self.owner, self.clock() + self.lease)

    def release(self) -> None:
        """Give back what was claimed but not stored (a failed cycle): free at once."""
        held, self.held = list(self.held), set()
        self.store.feeds.release(held, self.owner)


@contextlib.asynccontextmanager
async def keeping_leases(claims: Claims, every: float) -> AsyncIterator[None]:
    """Extend the held leases every ``every`` seconds while the body runs."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(claims.extend)
            except Exception as exc:  # noqa: BLE001 - the next try may work; expiry is safe
                log.warning("lease_extend_failed error=%r", error_line(exc))

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
