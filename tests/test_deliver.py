"""The delivery worker against real receivers, with an in-memory OutboxStore.

Time is a parameter: each pass gets its ``now``; nothing sleeps but real I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.deliver import (
    GIVE_UP_AFTER,
    DeliveryReport,
    OutboxStore,
    deliver_due,
    digest_id_for,
    retry_delay,
)
from alerts.logfile import LogSender
from alerts.senders import ChannelPolicy, DigestSchedule, Sender, parse_digest_at
from alerts.smtp import SmtpSender
from alerts.webhook import WebhookSender
from monitor.errors import StorageError
from monitor.model import ArticleSnapshot, FeedSnapshot, OutboxAlert, StorySnapshot
from tests import alertpeers
from tests.alertpeers import SmtpPeer, WebhookPeer, html_of

# The real peers' fixtures, by name: pytest finds fixtures in a test module's namespace.
smtp_peer = alertpeers.smtp_peer
webhook_peer = alertpeers.webhook_peer

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SECRET = "whsec-signing-secret-123"
TOKEN = "Bearer header-token-456"


class MemoryOutbox:
    """The OutboxStore protocol over dicts: the reference for the semantics it documents."""

    def __init__(self) -> None:
        self.rows: dict[str, OutboxAlert] = {}
        self.sent_at: dict[str, datetime] = {}
        self.stories: dict[str, StorySnapshot] = {}
        self.feeds: dict[str, FeedSnapshot] = {}
        self.taken: set[str] = set()  # rows another instance took over
        self._count = 0

    def add(self, channel: str, created_at: datetime, event: str = "story.new") -> OutboxAlert:
        self._count += 1
        number = self._count
        story_id = feed_url = None
        if event == "story.new":
            story_id = f"s_{number}"
            article = ArticleSnapshot(
                f"a_{number}", f"Story {number}", f"https://news.example.org/{number}",
                "Mehr News", created_at - timedelta(minutes=1), f"Summary {number}",
            )  # fmt: skip
            self.stories[story_id] = StorySnapshot(
                story_id, f"Story {number}", created_at, created_at, 1, (article,)
            )
        else:
            feed_url = f"https://feeds.example.org/{number}.xml"
            self.feeds[feed_url] = FeedSnapshot(f"Feed {number}", feed_url, "HTTP 503", created_at)
        alert = OutboxAlert(
            f"al_{number:04d}", channel, event, "Wagner Group" if story_id else None,
            ("Wagner",) if story_id else (), story_id, feed_url, created_at, 0, "pending", None,
            None,
        )  # fmt: skip
        self.rows[alert.id] = alert
        return alert

    def state(self, alert_id: str) -> OutboxAlert:
        return self.rows[alert_id]

    def due_alerts(
        self, channel: str, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxAlert]:
        due = [
            a
            for a in self.rows.values()
            if a.channel == channel
            and a.state == "pending"
            and (a.next_attempt is None or a.next_attempt <= now)
        ]
        return sorted(due, key=lambda a: (a.created_at, a.id))[:limit]

    def renew(self, alert_id: str, now: datetime, lease: timedelta) -> bool:
        return self.rows[alert_id].state == "pending" and alert_id not in self.taken

    def story_snapshot(self, story_id: str) -> StorySnapshot | None:
        return self.stories.get(story_id)

    def feed_snapshot(self, feed_url: str) -> FeedSnapshot | None:
        return self.feeds.get(feed_url)

    def first_story_alerts(
        self, channel: str, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        rows = [
            a
            for a in self.rows.values()
            if a.channel == channel and a.event == "story.new" and since <= a.created_at < until
        ]
        return [a.id for a in sorted(rows, key=lambda a: (a.created_at, a.id))[:limit]]

    def _update(self, alert_id: str, **changes: object) -> None:
        if self.rows[alert_id].state == "pending":
            self.rows[alert_id] = replace(self.rows[alert_id], **changes)  # type: ignore[arg-type]

    def mark_sent(self, alert_id: str, *, attempts: int, sent_at: datetime) -> None:
        if self.rows[alert_id].state == "pending":
            self.sent_at[alert_id] = sent_at
        self._update(alert_id, state="sent", attempts=attempts, next_attempt=None)

    def mark_retry(
        self, alert_id: str, *, attempts: int, next_attempt: datetime, last_error: str | None
    ) -> None:
        self._update(alert_id, attempts=attempts, next_attempt=next_attempt, last_error=last_error)

    def mark_failed(self, alert_id: str, *, attempts: int, last_error: str) -> None:
        self._update(
            alert_id, state="failed", attempts=attempts, last_error=last_error, next_attempt=None
        )


def deliver(
    store: OutboxStore,
    senders: dict[str, Sender],
    now: datetime,
    policies: dict[str, ChannelPolicy] | None = None,
) -> DeliveryReport:
    return asyncio.run(deliver_due(store, senders, policies or {}, now=now, rng=random.Random(7)))


def deliveries(peer: WebhookPeer) -> list[str | None]:
    return [r.header("X-Monitor-Delivery") for r in peer.requests]


# --- retries --------------------------------------------------------------------------


def test_webhook_500_then_200_is_retried_after_backoff(webhook_peer: WebhookPeer) -> None:
    store = MemoryOutbox()
    alert = store.add("hook", T0)
    senders: dict[str, Sender] = {"hook": WebhookSender(webhook_peer.url)}
    webhook_peer.respond(500, 200)

    report = deliver(store, senders, T0)
    row = store.state(alert.id)
    assert report.retrying == (alert.id,) and report.errors == {"hook": "HTTP 500 from webhook"}
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500 from webhook")
    assert row.next_attempt is not None
    assert T0 + timedelta(seconds=4) <= row.next_attempt <= T0 + timedelta(seconds=5)

    assert deliver(store, senders, T0 + timedelta(seconds=2)) == DeliveryReport()  # not due yet
    report = deliver(store, senders, row.next_attempt)
    assert report.sent == (alert.id,) and report.messages == 1
    assert (store.state(alert.id).state, store.state(alert.id).attempts) == ("sent", 2)
    assert deliveries(webhook_peer) == [alert.id, alert.id]
    assert webhook_peer.requests[0].body == webhook_peer.requests[1].body


def test_smtp_down_then_up_is_retried(smtp_peer: SmtpPeer) -> None:
    store = MemoryOutbox()
    alert = store.add("mail", T0)
    sender = SmtpSender(
        smtp_peer.host, smtp_peer.port, sender="m@example.org", to=["d@example.org"], timeout=5
    )
    smtp_peer.stop()
    report = deliver(store, {"mail": sender}, T0)
    row = store.state(alert.id)
    assert report.retrying == (alert.id,)
    assert row.last_error == f"SMTP 127.0.0.1:{smtp_peer.port}: Connection refused"

    smtp_peer.start()
    assert row.next_attempt is not None
    report = deliver(store, {"mail": sender}, row.next_attempt)
    assert report.sent == (alert.id,)
    [mail] = smtp_peer.messages
    assert mail.message["Message-ID"] == f"<{alert.id}@feed-monitor>"


def test_gives_up_after_24h_with_the_last_error(webhook_peer: WebhookPeer) -> None:
    store = MemoryOutbox()
    alert = store.add("hook", T0)
    webhook_peer.default_status = 503
    senders: dict[str, Sender] = {"hook": WebhookSender(webhook_peer.url)}

    deliver(store, senders, T0 + GIVE_UP_AFTER - timedelta(minutes=1))
    assert store.state(alert.id).state == "pending"
    report = deliver(store, senders, T0 + GIVE_UP_AFTER + timedelta(minutes=10))
    row = store.state(alert.id)
    assert report.failed == (alert.id,)
    assert (row.state, row.attempts, row.last_error) == ("failed", 2, "HTTP 503 from webhook")
    assert deliver(store, senders, T0 + timedelta(days=3)) == DeliveryReport()


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 4.0, 5.0), (2, 8.0, 10.0), (3, 16.0, 20.0), (7, 256.0, 320.0), (8, 480.0, 600.0),
     (9, 480.0, 600.0), (50, 480.0, 600.0), (10_000, 480.0, 600.0)],
)  # fmt: skip
def test_retry_delay_doubles_with_jitter_and_a_10_minute_cap(
    attempts: int, low: float, high: float
) -> None:
    rng = random.Random(attempts)
    delays = {retry_delay(attempts, rng).total_seconds() for _ in range(50)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 1  # jitter


# --- channels are independent ---------------------------------------------------------


def test_a_hanging_channel_does_not_delay_another(tmp_path: Path) -> None:
    store = MemoryOutbox()
    slow_first, slow_second = store.add("slow", T0), store.add("slow", T0 + timedelta(seconds=1))
    fast = [store.add("fast", T0), store.add("fast", T0 + timedelta(seconds=1))]
    with WebhookPeer() as slow_peer, WebhookPeer() as fast_peer:
        slow_peer.delay = 3.0
        senders: dict[str, Sender] = {
            "slow": WebhookSender(slow_peer.url),
            "fast": WebhookSender(fast_peer.url),
        }
        policies = {"slow": ChannelPolicy(send_timeout=0.5)}
        started = time.monotonic()
        report = deliver(store, senders, T0 + timedelta(seconds=2), policies)
        elapsed = time.monotonic() - started

        assert elapsed < 2.0
        assert all(r.at - started < 0.5 for r in fast_peer.requests)
        assert set(report.sent) == {a.id for a in fast}
        assert len(slow_peer.requests) == 1  # the second waits behind the first failure
        first, second = store.state(slow_first.id), store.state(slow_second.id)
        assert first.last_error == "no answer within 0.5s" and first.attempts == 1
        assert second.attempts == 0 and second.next_attempt == first.next_attempt
        assert report.held == (slow_second.id,)


def test_a_rejected_message_does_not_stop_the_channel(webhook_peer: WebhookPeer) -> None:
    store = MemoryOutbox()
    first, second = store.add("hook", T0), store.add("hook", T0 + timedelta(seconds=1))
    webhook_peer.respond(422, 200)
    report = deliver(store, {"hook": WebhookSender(webhook_peer.url)}, T0 + timedelta(seconds=2))
    assert report.retrying == (first.id,) and report.sent == (second.id,)
    assert store.state(first.id).last_error == "HTTP 422 from webhook"


def test_storage_error_is_raised_after_the_other_channels_finish(tmp_path: Path) -> None:
    class BrokenForOne(MemoryOutbox):
        def due_alerts(
            self, channel: str, now: datetime, limit: int, lease: timedelta
        ) -> list[OutboxAlert]:
            if channel == "broken":
                raise StorageError("database is locked")
            return super().due_alerts(channel, now, limit, lease)

    store = BrokenForOne()
    alert = store.add("log", T0)
    senders: dict[str, Sender] = {
        "broken": LogSender(tmp_path / "b.jsonl"),
        "log": LogSender(tmp_path / "a.jsonl"),
    }
    with pytest.raises(StorageError):
        deliver(store, senders, T0)
    assert store.state(alert.id).state == "sent"


def test_rows_of_channels_without_a_sender_are_left_alone(tmp_path: Path) -> None:
    store = MemoryOutbox()
    orphan = store.add("removed", T0)
    deliver(store, {"log": LogSender(tmp_path / "a.jsonl")}, T0)
    assert store.state(orphan.id) == orphan


def test_an_alert_whose_story_is_gone_fails_at_once(tmp_path: Path) -> None:
    store = MemoryOutbox()
    alert = store.add("log", T0)
    del store.stories[alert.story_id or ""]
    report = deliver(store, {"log": LogSender(tmp_path / "a.jsonl")}, T0)
    assert report.failed == (alert.id,)
    assert store.state(alert.id).last_error == f"story {alert.story_id} no longer exists"


# --- log channel ----------------------------------------------------------------------


def test_log_channel_writes_one_json_line_per_alert(tmp_path: Path) -> None:
    store = MemoryOutbox()
    alerts = [store.add("log", T0), store.add("log", T0), store.add("log", T0, "feed.broken")]
    path = tmp_path / "alerts.jsonl"
    report = deliver(store, {"log": LogSender(path)}, T0)
    assert report.messages == 3
    bodies = [json.loads(line) for line in path.read_text().splitlines()]
    assert [b["id"] for b in bodies] == [a.id for a in alerts]
    assert [b["event"] for b in bodies] == ["story.new", "story.new", "feed.broken"]
    assert bodies[2]["feed"]["last_error"] == "HTTP 503"


# --- digests --------------------------------------------------------------------------


HOURLY = {"hook": ChannelPolicy(digest=DigestSchedule(timedelta(hours=1)))}


def test_digest_sends_one_message_after_the_period_and_nothing_when_empty(
    webhook_peer: WebhookPeer,
) -> None:
    store = MemoryOutbox()
    senders: dict[str, Sender] = {"hook": WebhookSender(webhook_peer.url)}
    first = store.add("hook", T0 + timedelta(minutes=5))
    broken = store.add("hook", T0 + timedelta(minutes=10), "feed.broken")
    second = store.add("hook", T0 + timedelta(minutes=20))

    report = deliver(store, senders, T0 + timedelta(minutes=30), HOURLY)
    assert report.sent == (broken.id,)  # feed.* bypass digests
    assert set(report.held) == {first.id, second.id}
    assert store.state(first.id).next_attempt == T0 + timedelta(hours=1)
    assert deliver(store, senders, T0 + timedelta(minutes=59), HOURLY) == DeliveryReport()

    report = deliver(store, senders, T0 + timedelta(hours=1), HOURLY)
    assert report.messages == 1 and report.sent == (first.id, second.id)
    request = webhook_peer.requests[-1]
    body = request.json()
    assert request.header("X-Monitor-Event") == "digest"
    assert request.header("X-Monitor-Delivery") == body["id"]
    assert body["id"] == digest_id_for([first.id, second.id])
    assert body["event"] == "digest" and body["created_at"] == "2026-11-28T11:00:00Z"
    assert [a["id"] for a in body["alerts"]] == [first.id, second.id]
    assert [a["event"] for a in body["alerts"]] == ["story.new", "story.new"]

    assert deliver(store, senders, T0 + timedelta(hours=2, minutes=1), HOURLY) == DeliveryReport()
    assert len(webhook_peer.requests) == 2


def test_a_failed_digest_is_retried_whole_with_the_same_id(webhook_peer: WebhookPeer) -> None:
    store = MemoryOutbox()
    senders: dict[str, Sender] = {"hook": WebhookSender(webhook_peer.url)}
    members = [store.add("hook", T0 + timedelta(minutes=m)) for m in (5, 6)]
    webhook_peer.respond(500)
    report = deliver(store, senders, T0 + timedelta(hours=1), HOURLY)
    assert report.retrying == tuple(a.id for a in members)
    retry_at = {store.state(a.id).next_attempt for a in members}
    assert len(retry_at) == 1
    report = deliver(store, senders, retry_at.pop(), HOURLY)  # type: ignore[arg-type]
    assert report.sent == tuple(a.id for a in members)
    assert deliveries(webhook_peer)[0] == deliveries(webhook_peer)[1]


def test_digest_by_email_is_one_message(smtp_peer: SmtpPeer) -> None:
    store = MemoryOutbox()
    for minute in (1, 2):
        store.add("mail", T0 + timedelta(minutes=minute))
    sender = SmtpSender(smtp_peer.host, smtp_peer.port, sender="m@example.org", to=["d@x.org"])
    policies = {"mail": HOURLY["hook"]}
    deliver(store, {"mail": sender}, T0 + timedelta(minutes=3), policies)
    assert smtp_peer.messages == []
    deliver(store, {"mail": sender}, T0 + timedelta(hours=1, seconds=1), policies)
    [mail] = smtp_peer.messages
    message = mail.message
    assert message["Subject"] == "[monitor] 2 new stories"
    assert message["X-Monitor-Event"] == "digest"
    assert "Story 1" in html_of(message)


def test_max_per_hour_folds_the_rest_of_the_hour_into_one_digest(
    webhook_peer: WebhookPeer,
) -> None:
    store = MemoryOutbox()
    senders: dict[str, Sender] = {"hook": WebhookSender(webhook_peer.url)}
    policies = {"hook": ChannelPolicy(max_per_hour=2)}
    flood = [store.add("hook", T0 + timedelta(minutes=m)) for m in range(1, 6)]

    report = deliver(store, senders, T0 + timedelta(minutes=10), policies)
    assert report.sent == (flood[0].id, flood[1].id) and report.messages == 2
    assert set(report.held) == {a.id for a in flood[2:]}

    later = store.add("hook", T0 + timedelta(hours=1, minutes=1))
    report = deliver(store, senders, T0 + timedelta(hours=1, minutes=2), policies)
    assert report.messages == 2  # the folded digest, then the new hour's first alert
    digest = webhook_peer.requests[2].json()
    assert digest["event"] == "digest"
    assert [a["id"] for a in digest["alerts"]] == [a.id for a in flood[2:]]
    assert webhook_peer.requests[3].header("X-Monitor-Delivery") == later.id


# --- schedules ------------------------------------------------------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "at", "moment", "end"),
    [
        (timedelta(hours=1), None, "2026-11-28T10:05:00", "2026-11-28T11:00:00"),
        (timedelta(hours=1), None, "2026-11-28T10:00:00", "2026-11-28T11:00:00"),
        (timedelta(minutes=15), None, "2026-11-28T10:31:00", "2026-11-28T10:45:00"),
        (timedelta(days=1), None, "2026-11-28T23:59:59", "2026-11-29T00:00:00"),
        # Berlin is UTC+1 in winter, UTC+2 in summer
        (timedelta(days=1), "08:00 Europe/Berlin", "2026-11-28T06:59:00", "2026-11-28T07:00:00"),
        (timedelta(days=1), "08:00 Europe/Berlin", "2026-11-28T07:00:00", "2026-11-29T07:00:00"),
        (timedelta(days=1), "08:00 Europe/Berlin", "2026-07-01T09:00:00", "2026-07-02T06:00:00"),
        (timedelta(days=1), "08:00 Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T06:00:00"),
        (timedelta(days=1), "08:00", "2026-11-28T09:00:00", "2026-11-29T08:00:00"),
        (timedelta(hours=12), "08:30 UTC", "2026-11-28T09:00:00", "2026-11-28T20:30:00"),
        (timedelta(days=2), "06:00", "2026-11-28T09:00:00", "2026-11-29T06:00:00"),
    ],
)
def test_digest_period_end(period: timedelta, at: str | None, moment: str, end: str) -> None:
    assert DigestSchedule.parse(period, at).period_end(utc(moment)) == utc(end)


@pytest.mark.parametrize("text", ["8am", "25:00", "08:61", "08:00 Mars/Olympus", ""])
def test_bad_digest_at_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="digest_at"):
        parse_digest_at(text)


# --- secrets --------------------------------------------------------------------------


def test_secrets_reach_neither_the_outbox_nor_the_logs(
    webhook_peer: WebhookPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryOutbox()
    alert = store.add("hook", T0)
    url = webhook_peer.url + "/path-token-789"
    sender = WebhookSender(url, secret=SECRET, headers={"Authorization": TOKEN}, timeout=2)
    webhook_peer.stop()
    report = deliver(store, {"hook": sender}, T0)
    webhook_peer.start()
    webhook_peer.respond(500)
    report += deliver(store, {"hook": sender}, T0 + timedelta(minutes=1))
    texts = [store.state(alert.id).last_error or "", caplog.text, repr(report), repr(sender)]
    assert "unreachable" in caplog.text and "HTTP 500 from webhook" in texts[0]
    for text in texts:
        for secret in (SECRET, TOKEN, "path-token-789"):
            assert secret not in text


def test_a_row_taken_over_by_another_instance_is_not_sent(tmp_path: Path) -> None:
    store = MemoryOutbox()
    first, second = store.add("log", T0), store.add("log", T0 + timedelta(seconds=1))
    store.taken.add(first.id)
    log_file = tmp_path / "alerts.jsonl"
    report = deliver(store, {"log": LogSender(log_file)}, T0 + timedelta(seconds=2))
    assert report.sent == (second.id,)
    assert store.state(first.id).state == "pending"  # the other instance's to finish
    assert [json.loads(line)["id"] for line in log_file.read_text().splitlines()] == [second.id]
