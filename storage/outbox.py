"""The alert outbox: rows are the truth; delivery state changes are small transactions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from monitor.model import OutboxAlert
from storage.engine import error_line, write_retrying
from storage.tables import outbox


def _record(row: Row[Any]) -> OutboxAlert:
    return OutboxAlert(
        id=row.id,
        channel=row.channel,
        event=row.event,
        entity=row.entity,
        matched=tuple(json.loads(row.matched or "[]")),
        story_id=row.story_id,
        feed_url=row.feed_url,
        created_at=row.created_at,
        attempts=row.attempts,
        state=row.state,
        next_attempt=row.next_attempt,
        last_error=row.last_error,
    )


log = logging.getLogger("storage.outbox")

DEFAULT_LEASE = timedelta(seconds=60)


class OutboxRepo:
    """``owner`` names this instance in the leases it takes on rows it is delivering."""

    def __init__(self, engine: Engine, owner: str) -> None:
        self.engine = engine
        self.owner = owner

    def add(self, alerts: Sequence[OutboxAlert]) -> None:
        if not alerts:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(outbox), [row_values(a) for a in alerts])

    def query(self, *, pending_only: bool = False, limit: int | None = None) -> list[OutboxAlert]:
        stmt = select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id)
        if pending_only:
            stmt = stmt.where(outbox.c.state == "pending")
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_record(r) for r in rows]

    def get(self, alert_id: str) -> OutboxAlert | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.id == alert_id)).first()
        return _record(row) if row else None

    def due_alerts(
        self, channel: str, now: datetime, limit: int, lease: timedelta = DEFAULT_LEASE
    ) -> list[OutboxAlert]:
        """Claim pending rows of ``channel`` whose next attempt has come, oldest first.

        Rows another instance leases are skipped (``SKIP LOCKED`` on PostgreSQL), so each
        alert is in the hands of one instance at a time; the lease ends with a ``mark_*``.
        While the database refuses writes (disk full, read-only) the rows are read without
        a claim: alerts still go out, at least once, as the outbox promises.
        """
        due = (
            select(outbox)
            .where(outbox.c.state == "pending", outbox.c.channel == channel)
            .where((outbox.c.next_attempt.is_(None)) | (outbox.c.next_attempt <= now))
            .where(outbox.c.lease_until.is_(None) | (outbox.c.lease_until < now))
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
        )
        stmt = due.with_for_update(skip_locked=True)

        def claim() -> list[OutboxAlert]:
            with self.engine.begin() as conn:
                rows = conn.execute(stmt).all()
                if rows:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id.in_([r.id for r in rows]))
                        .values(lease_owner=self.owner, lease_until=now + lease)
                    )
                return [_record(r) for r in rows]

        try:
            return write_retrying(claim, self.engine)
        except SQLAlchemyError as exc:
            log.warning(
                "outbox_claim_refused channel=%s error=%r: delivering without a claim",
                channel,
                error_line(exc),
            )
        with self.engine.connect() as conn:
            rows = conn.execute(due).all()
        return [_record(r) for r in rows]

    def renew(self, alert_id: str, now: datetime, lease: timedelta = DEFAULT_LEASE) -> bool:
        """Extend this instance's lease on a pending row before sending it (or take an
        unheld one); False when the row was delivered, cancelled or taken over by another
        instance meanwhile."""

        def write() -> bool:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.id == alert_id,
                        outbox.c.state == "pending",
                        outbox.c.lease_owner.is_(None) | (outbox.c.lease_owner == self.owner),
                    )
                    .values(lease_owner=self.owner, lease_until=now + lease)
                )
                return bool(res.rowcount)

        try:
            return write_retrying(write, self.engine)
        except SQLAlchemyError:
            return True  # writes refused: the claim could not be taken either (see above)

    def release_owners(self, owners: Sequence[str]) -> int:
        """Free every lease of ``owners`` (instances known to be gone)."""
        if not owners:
            return 0

        def write() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(outbox)
                    .where(outbox.c.lease_owner.in_(list(owners)))
                    .values(lease_owner=None, lease_until=None)
                )
                return int(res.rowcount)

        return write_retrying(write, self.engine)

    def first_story_alerts(
        self, channel: str, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        stmt = (
            select(outbox.c.id)
            .where(
                outbox.c.channel == channel,
                outbox.c.event == "story.new",
                outbox.c.created_at >= since,
                outbox.c.created_at < until,
            )
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def pending_count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
                ).scalar_one()
            )

    def mark_sent(self, alert_id: str, *, attempts: int, sent_at: datetime) -> None:
        self._set(alert_id, state="sent", attempts=attempts, sent_at=sent_at, next_attempt=None)

    def mark_retry(
        self, alert_id: str, *, attempts: int, next_attempt: datetime, last_error: str | None
    ) -> None:
        self._set(alert_id, attempts=attempts, next_attempt=next_attempt, last_error=last_error)

    def mark_failed(self, alert_id: str, *, attempts: int, last_error: str) -> None:
        self._set(
            alert_id, state="failed", attempts=attempts, next_attempt=None, last_error=last_error
        )

    def _set(self, alert_id: str, **values: object) -> None:
        """Change a row that is still pending (a cancelled row stays cancelled); the
        outcome of an attempt ends the lease."""

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == alert_id, outbox.c.state == "pending")
                    .values(**values, lease_owner=None, lease_until=None)
                )

        write_retrying(write, self.engine)

    def retry(self, *, alert_id: str | None = None, channel: str | None = None) -> int:
        """Put failed alerts back to pending (same id, attempts reset)."""
        stmt = update(outbox).where(outbox.c.state == "failed")
        if alert_id is not None:
            stmt = stmt.where(outbox.c.id == alert_id)
        if channel is not None:
            stmt = stmt.where(outbox.c.channel == channel)
        values = {"state": "pending", "attempts": 0, "next_attempt": None, "lease_until": None}

        def write() -> int:
            with self.engine.begin() as conn:
                return int(conn.execute(stmt.values(**values)).rowcount)

        return write_retrying(write, self.engine)

    def cancel_channels(self, keep: Sequence[str]) -> int:
        """Pending alerts of channels no longer configured become ``cancelled``."""

        def write() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(outbox)
                    .where(outbox.c.state == "pending", outbox.c.channel.not_in(list(keep)))
                    .values(state="cancelled", next_attempt=None)
                )
                return int(res.rowcount)

        return write_retrying(write, self.engine)


def row_values(a: OutboxAlert) -> dict[str, object]:
    return {
        "id": a.id,
        "channel": a.channel,
        "event": a.event,
        "entity": a.entity,
        "matched": json.dumps(list(a.matched)),
        "story_id": a.story_id,
        "feed_url": a.feed_url,
        "state": a.state,
        "attempts": a.attempts,
        "created_at": a.created_at,
        "next_attempt": a.next_attempt,
        "last_error": a.last_error,
    }
