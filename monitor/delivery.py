"""Wiring between the outbox (storage) and the channels (alerts): one delivery pass.

Senders are built from the current config at each pass, so a changed channel setting
(url, smtp, secret) applies to its pending alerts.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from alerts.deliver import deliver_due, send_test
from alerts.senders import Sender, policy_for, sender_for
from monitor.config import Config
from monitor.errors import DeliveryError
from monitor.health import HealthStatus, is_overdue
from monitor.metrics import METRICS
from monitor.pipeline import Engine, utcnow

if TYPE_CHECKING:
    from monitor.daemon import Daemon

log = logging.getLogger("monitor.delivery")


def _senders(cfg: Config) -> dict[str, Sender]:
    timeout = cfg.settings.timeout
    return {ch.name: sender_for(ch, default_timeout=timeout) for ch in cfg.alerts}


async def deliver_pending(engine: Engine) -> str:
    """Deliver every due alert of every configured channel (one pass)."""
    cfg = engine.config
    policies = {ch.name: policy_for(ch, default_timeout=cfg.settings.timeout) for ch in cfg.alerts}
    report = await deliver_due(engine.store, _senders(cfg), policies, now=utcnow(), rng=engine.rng)
    for ch, err in report.errors.items():
        log.warning("delivery_failed channel=%s error=%r", ch, err)
        METRICS.alerts_failed_total.inc(channel=ch)
    if report.sent:
        log.info("alerts_sent count=%d messages=%d", len(report.sent), report.messages)
        METRICS.alerts_sent_total.inc(len(report.sent), channel="all")
    return (
        f"{len(report.sent)} alerts delivered, {len(report.retrying)} to retry, "
        f"{len(report.failed)} failed, {len(report.held)} held"
    )


async def test_channel(cfg: Config, name: str) -> tuple[bool, str]:
    """`monitor test-alert`: a sample through one channel, outside the outbox."""
    channel = next(ch for ch in cfg.alerts if ch.name == name)
    sender = sender_for(channel, default_timeout=cfg.settings.timeout)
    timeout = policy_for(channel, default_timeout=cfg.settings.timeout).send_timeout
    try:
        body = await send_test(sender, timeout=timeout)
    except DeliveryError as exc:
        return False, f"{name}: failed: {exc}"
    return True, f"{name}: sent test alert {body['id']}"


async def refresh_health(daemon: Daemon) -> None:
    """Read the counts /healthz shows (off the event loop) and keep them on the daemon."""
    daemon.health = await asyncio.to_thread(_health_counts, daemon)


def _health_counts(daemon: Daemon) -> dict[str, Any]:
    cfg = daemon.engine.config
    now = utcnow()
    urls = {f.url: f for f in cfg.feeds if f.enabled}
    ok = failing = overdue = 0
    for st in daemon.engine.store.feeds.states(list(urls)):
        if not st.enabled:
            continue
        if st.consecutive_errors:
            failing += 1
        elif st.last_fetch is not None:
            ok += 1
        interval = timedelta(
            seconds=st.interval_seconds or cfg.settings.poll_interval.total_seconds()
        )
        if st.next_poll is not None and is_overdue(st.next_poll, interval, now):
            overdue += 1
    return {
        "feeds_ok": ok,
        "feeds_failing": failing,
        "feeds_overdue": overdue,
        "outbox_pending": daemon.engine.store.outbox.pending_count(),
    }


def health_status(daemon: Daemon) -> HealthStatus:
    h = daemon.health
    return HealthStatus(
        last_tick=daemon.last_tick,
        feeds_ok=h.get("feeds_ok", 0),
        feeds_failing=h.get("feeds_failing", 0),
        feeds_overdue=h.get("feeds_overdue", 0),
        outbox_pending=h.get("outbox_pending", 0),
        now=utcnow(),
        started_at=daemon.started_at,
    )
