"""The alert outbox: rows are the truth; delivery state changes are small transactions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from monitor.model import OutboxAlert
from storage.engine import write_retrying
from storage.tables import Outbox


def _record(row: Outbox) -> OutboxAlert:
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


class OutboxRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, alerts: Sequence[OutboxAlert]) -> None:
        if not alerts:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(Outbox), [row_values(a) for a in alerts])

    def query(self, *, pending_only: bool = False, limit: int | None = None) -> list[OutboxAlert]:
        stmt = select(Outbox).order_by(Outbox.created_at.desc(), Outbox.id)
        if pending_only:
            stmt = stmt.where(Outbox.state == "pending")
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_record(Outbox(**dict(r))) for r in rows]

    def get(self, alert_id: str) -> OutboxAlert | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Outbox).where(Outbox.id == alert_id)).mappings().first()
        return _record(Outbox(**dict(row))) if row else None

    def due_alerts(self, channel: str, now: datetime, limit: int) -> list[OutboxAlert]:
        """Pending rows of ``channel`` whose next attempt has come, oldest first."""
        stmt = (
            select(Outbox)
            .where(Outbox.state == "pending", Outbox.channel == channel)
            .where((Outbox.next_attempt.is_(None)) | (Outbox.next_attempt <= now))
            .order_by(Outbox.created_at, Outbox.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_record(Outbox(**dict(r))) for r in rows]

    def first_story_alerts(
        self, channel: str, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        stmt = (
            select(Outbox.id)
            .where(
                Outbox.channel == channel,
                Outbox.event == "story.new",
                Outbox.created_at >= since,
                Outbox.created_at < until,
            )
            .order_by(Outbox.created_at, Outbox.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def pending_count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(Outbox).where(Outbox.state == "pending")
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
        """Change a row that is still pending (a cancelled row stays cancelled)."""

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Outbox)
                    .where(Outbox.id == alert_id, Outbox.state == "pending")
                    .values(**values)
                )

        write_retrying(write)

    def retry(self, *, alert_id: str | None = None, channel: str | None = None) -> int:
        """Put failed alerts back to pending (same id, attempts reset)."""
        stmt = update(Outbox).where(Outbox.state == "failed")
        if alert_id is not None:
            stmt = stmt.where(Outbox.id == alert_id)
        if channel is not None:
            stmt = stmt.where(Outbox.channel == channel)
        with self.engine.begin() as conn:
            res = conn.execute(stmt.values(state="pending", attempts=0, next_attempt=None))
            return int(res.rowcount)

    def cancel_channels(self, keep: Sequence[str]) -> int:
        """Pending alerts of channels no longer configured become ``cancelled``."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Outbox)
                .where(Outbox.state == "pending", Outbox.channel.not_in(list(keep)))
                .values(state="cancelled", next_attempt=None)
            )
            return int(res.rowcount)


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
