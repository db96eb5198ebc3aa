"""The delivery worker: sends due outbox rows, records each outcome, never loses one.

One pass (``deliver_due``) runs every channel concurrently; a channel's alerts go
out one at a time, oldest first, each send bounded by the channel's timeout, so a
channel that hangs or fails never delays another. Per channel::

    due_alerts(channel, now)            pending rows whose next_attempt has come
      ├─ feed.* ........................ sent on their own, always
      ├─ story.new on a digest channel . held until their period ends, then one digest
      ├─ story.new past max_per_hour ... held until the hour ends, then one digest
      │    (counted by creation: the first max_per_hour alerts created in a UTC
      │    hour go out on their own, the rest of that hour fold into one digest)
      └─ story.new otherwise ........... sent on their own
    success  -> mark_sent
    failure  -> mark_retry (backoff: ~5 s, doubling, at most 10 min, jitter)
                or mark_failed once 24 h have passed since the alert was due
                (its created_at, or the end of its digest's period)
    a failure of the channel (not a MessageRejected) ends the channel's pass: its
    remaining rows wait until the failed row's next attempt, so a dead receiver sees
    one try per backoff step, in order.

Bodies are rendered at each attempt from the story as it stands then. The outbox
row is the truth: a crash between sending and ``mark_sent`` sends the alert again
with the same id (and a digest again with the same id).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from alerts.render import JsonBody, digest_body, feed_body, sample_body, story_body
from alerts.senders import ChannelPolicy, MessageRejected, Sender, epoch_aligned_end, utc
from monitor.errors import DeliveryError
from monitor.ids import new_id
from monitor.model import FeedSnapshot, OutboxAlert, StorySnapshot

log = logging.getLogger(__name__)

FIRST_RETRY = 5.0  # seconds before the first retry
MAX_RETRY = 600.0  # never more than 10 minutes between tries
JITTER = 0.2  # each delay is scaled by a random factor in [0.8, 1.0]
GIVE_UP_AFTER = timedelta(hours=24)  # since the alert was due: then failed
HOUR = timedelta(hours=1)
LEASE_SLACK = timedelta(seconds=10)  # a claim outlives the send it covers by this much


class OutboxStore(Protocol):
    """What delivery needs from storage: small, synchronous, one call per transaction.

    Datetimes are timezone-aware (UTC). A ``mark_*`` call on a row that is no longer
    ``pending`` (cancelled meanwhile by a config reload, say) changes nothing.
    """

    def due_alerts(
        self, channel: str, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxAlert]:
        """Claim rows of ``channel`` with state ``pending`` and ``next_attempt`` NULL or
        <= ``now`` that no other instance holds, for ``lease`` from ``now``.

        Oldest first: ordered by ``created_at``, then ``id``; at most ``limit`` rows. A
        ``mark_*`` call ends the claim.
        """
        ...

    def renew(self, alert_id: str, now: datetime, lease: timedelta) -> bool:
        """Hold a claimed row for ``lease`` from ``now`` before sending it; False when it is
        no longer pending or another instance took it over (then it is not sent)."""
        ...

    def story_snapshot(self, story_id: str) -> StorySnapshot | None:
        """The story as it stands now (articles in ascending ``published``); None if gone."""
        ...

    def feed_snapshot(self, feed_url: str) -> FeedSnapshot | None:
        """The feed (configured url) as a feed.* alert shows it now; None if unknown."""
        ...

    def first_story_alerts(
        self, channel: str, since: datetime, until: datetime, limit: int
    ) -> list[str]:
        """Ids of the first ``limit`` ``story.new`` rows of ``channel`` created in [since, until).

        Whatever their state (pending, sent, failed, cancelled); ordered by ``created_at``,
        then ``id``. Used by the ``max_per_hour`` flood guard: the first ``max_per_hour``
        alerts created in a UTC hour go out on their own, the rest fold into one digest.
        """
        ...

    def mark_sent(self, alert_id: str, *, attempts: int, sent_at: datetime) -> None:
        """state=``sent``, ``attempts`` as given, sent at ``sent_at``, next_attempt=NULL.

        ``last_error`` is left as it was (it records the last failure, if any).
        """
        ...

    def mark_retry(
        self, alert_id: str, *, attempts: int, next_attempt: datetime, last_error: str | None
    ) -> None:
        """State stays ``pending``; set ``attempts``, ``next_attempt`` and ``last_error``.

        Also used, with the row's own ``attempts`` and ``last_error``, to hold a row
        until its digest is due or until the channel's next try: ``next_attempt`` is
        then simply "not before".
        """
        ...

    def mark_failed(self, alert_id: str, *, attempts: int, last_error: str) -> None:
        """state=``failed``, ``attempts`` and ``last_error`` as given, next_attempt=NULL."""
        ...


def retry_delay(attempts: int, rng: random.Random) -> timedelta:
    """How long to wait after ``attempts`` failed tries: 5 s, 10 s, 20 s ... at most 10 min.

    Each delay is scaled by a random factor in [0.8, 1.0], so alerts that failed
    together (a receiver's outage) do not all come back at the same instant.
    """
    base = min(FIRST_RETRY * 2.0 ** min(max(attempts, 1) - 1, 30), MAX_RETRY)
    return timedelta(seconds=base * rng.uniform(1.0 - JITTER, 1.0))


def digest_id_for(alert_ids: Sequence[str]) -> str:
    """A digest's id: derived from its members, so a re-sent digest keeps its id."""
    digest = hashlib.sha256("\n".join(sorted(alert_ids)).encode("utf-8")).hexdigest()
    return f"dg_{digest[:24]}"


@dataclass(frozen=True)
class DeliveryReport:
    """What one pass did (alert ids; digest members count as sent alerts)."""

    sent: tuple[str, ...] = ()
    messages: int = 0  # messages that reached a receiver (a digest counts once)
    retrying: tuple[str, ...] = ()  # failed this time, will be tried again
    failed: tuple[str, ...] = ()  # given up: state failed
    held: tuple[str, ...] = ()  # waiting for their digest, or behind a failed alert
    errors: Mapping[str, str] = field(default_factory=dict)  # channel -> last error

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.sent + other.sent,
            self.messages + other.messages,
            self.retrying + other.retrying,
            self.failed + other.failed,
            self.held + other.held,
            {**self.errors, **other.errors},
        )


async def deliver_due(
    store: OutboxStore,
    senders: Mapping[str, Sender],
    policies: Mapping[str, ChannelPolicy],
    *,
    now: datetime,
    rng: random.Random,
    limit: int = 100,
) -> DeliveryReport:
    """One pass over every channel in ``senders``, concurrently.

    Rows of channels absent from ``senders`` are not touched. A storage error (or a
    bug) in one channel is raised once every channel has finished its pass.
    """
    names = sorted(senders)
    results = await asyncio.gather(
        *(
            deliver_channel(
                store,
                name,
                senders[name],
                policies.get(name, ChannelPolicy()),
                now=now,
                rng=rng,
                limit=limit,
            )
            for name in names
        ),
        return_exceptions=True,
    )
    report = DeliveryReport()
    for result in results:
        if isinstance(result, BaseException):
            raise result
        report += result
    return report


async def deliver_channel(
    store: OutboxStore,
    channel: str,
    sender: Sender,
    policy: ChannelPolicy,
    *,
    now: datetime,
    rng: random.Random,
    limit: int = 100,
) -> DeliveryReport:
    """One pass over one channel's due rows (see the module docstring)."""
    run = _ChannelRun(store, channel, sender, policy, utc(now), rng)
    singles, batch = run.sort(store.due_alerts(channel, run.now, limit, run.lease))
    resume_at = await run.send_digest(batch) if batch else None
    for index, alert in enumerate(singles):
        if resume_at is not None:
            run.hold(singles[index:], resume_at)
            break
        resume_at = await run.send_one(alert)
    return run.report()


async def send_test(
    sender: Sender, *, now: datetime | None = None, timeout: float | None = None
) -> JsonBody:
    """Send a sample alert (``X-Monitor-Event: test``) outside the outbox; return its body.

    Raises DeliveryError (with the channel's precise reason) when it does not arrive.
    """
    body = sample_body(new_id("al"), utc(now or datetime.now(UTC)))
    try:
        await asyncio.wait_for(sender.send("test", body["id"], body), timeout)
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g}s") from None
    return body


class _ChannelRun:
    """The state of one channel's pass: what it decided, for the report."""

    def __init__(
        self,
        store: OutboxStore,
        channel: str,
        sender: Sender,
        policy: ChannelPolicy,
        now: datetime,
        rng: random.Random,
    ) -> None:
        self.store, self.channel, self.sender, self.policy = store, channel, sender, policy
        self.now, self.rng = now, rng
        self.sent: list[str] = []
        self.messages = 0
        self.retrying: list[str] = []
        self.failed: list[str] = []
        self.held: list[str] = []
        self.error: str | None = None
        self._first_of_hour: dict[datetime, frozenset[str]] = {}
        self.lease = timedelta(seconds=policy.send_timeout) + LEASE_SLACK

    def report(self) -> DeliveryReport:
        errors = {} if self.error is None else {self.channel: self.error}
        return DeliveryReport(
            tuple(self.sent),
            self.messages,
            tuple(self.retrying),
            tuple(self.failed),
            tuple(self.held),
            errors,
        )

    def sort(
        self, due: Sequence[OutboxAlert]
    ) -> tuple[list[OutboxAlert], list[tuple[OutboxAlert, datetime]]]:
        """Split due rows into those sent on their own and released digest members
        (with their release time); hold members whose digest is not due yet."""
        singles: list[OutboxAlert] = []
        batch: list[tuple[OutboxAlert, datetime]] = []
        for alert in due:
            release = self.release_time(alert)
            if release is None:
                singles.append(alert)
            elif release > self.now:
                self.hold([alert], release)
            else:
                batch.append((alert, release))
        return singles, batch

    def release_time(self, alert: OutboxAlert) -> datetime | None:
        """When the alert goes out in a digest, or None when it goes out on its own."""
        if alert.event != "story.new":
            return None  # feed.* bypass digests and the flood guard
        created = utc(alert.created_at)
        if self.policy.digest is not None:
            return self.policy.digest.period_end(created)
        if self.policy.max_per_hour is not None and self._past_hourly_limit(alert):
            return epoch_aligned_end(created, HOUR)
        return None

    def _past_hourly_limit(self, alert: OutboxAlert) -> bool:
        assert self.policy.max_per_hour is not None
        hour = epoch_aligned_end(alert.created_at, HOUR) - HOUR
        if hour not in self._first_of_hour:
            first = self.store.first_story_alerts(
                self.channel, hour, hour + HOUR, self.policy.max_per_hour
            )
            self._first_of_hour[hour] = frozenset(first)
        return alert.id not in self._first_of_hour[hour]

    def hold(self, alerts: Sequence[OutboxAlert], until: datetime) -> None:
        """Not before ``until``: attempts and last error unchanged."""
        for alert in alerts:
            self.store.mark_retry(
                alert.id, attempts=alert.attempts, next_attempt=until, last_error=alert.last_error
            )
            self.held.append(alert.id)
            log.debug("alert_held channel=%s alert=%s until=%s", self.channel, alert.id, until)

    def body(self, alert: OutboxAlert) -> JsonBody | None:
        """The alert's body as of now; None (and the row failed) when it cannot be had."""
        if alert.event.startswith("feed."):
            feed = self.store.feed_snapshot(alert.feed_url) if alert.feed_url else None
            if feed is not None:
                return feed_body(alert, feed)
            self.give_up(alert, f"feed {alert.feed_url} is unknown", attempts=alert.attempts)
            return None
        story = self.store.story_snapshot(alert.story_id) if alert.story_id else None
        if story is not None:
            return story_body(alert, story)
        self.give_up(alert, f"story {alert.story_id} no longer exists", attempts=alert.attempts)
        return None

    def still_ours(self, alert: OutboxAlert) -> bool:
        """Renew the claim right before a send (earlier sends of the pass took time)."""
        now = max(self.now, datetime.now(UTC))
        if self.store.renew(alert.id, now, self.lease):
            return True
        log.info("alert_skipped channel=%s alert=%s (handled elsewhere)", self.channel, alert.id)
        return False

    async def send_one(self, alert: OutboxAlert) -> datetime | None:
        """Send one alert; on a channel failure, return when the channel may try again."""
        if not self.still_ours(alert):
            return None
        body = self.body(alert)
        if body is None:
            return None
        error = await self.attempt(alert.event, alert.id, body)
        if error is None:
            self.delivered([alert])
            log.info("alert_sent channel=%s alert=%s event=%s", self.channel, alert.id, alert.event)
            return None
        next_attempt = self.now + retry_delay(alert.attempts + 1, self.rng)
        self.after_failure(alert, error, utc(alert.created_at), next_attempt)
        return None if isinstance(error, MessageRejected) else next_attempt

    async def send_digest(self, batch: Sequence[tuple[OutboxAlert, datetime]]) -> datetime | None:
        """Send released members as one digest (nothing when none is left to show)."""
        members: list[tuple[OutboxAlert, datetime]] = []
        bodies: list[JsonBody] = []
        for alert, release in batch:
            if not self.still_ours(alert):
                continue
            body = self.body(alert)
            if body is not None:
                members.append((alert, release))
                bodies.append(body)
        if not members:
            return None
        digest_id = digest_id_for([alert.id for alert, _ in members])
        created = max(release for _, release in members)
        error = await self.attempt("digest", digest_id, digest_body(digest_id, created, bodies))
        if error is None:
            self.delivered([alert for alert, _ in members])
            log.info(
                "digest_sent channel=%s digest=%s alerts=%d", self.channel, digest_id, len(bodies)
            )
            return None
        tries = max(alert.attempts for alert, _ in members) + 1
        next_attempt = self.now + retry_delay(tries, self.rng)
        for alert, release in members:
            self.after_failure(alert, error, release, next_attempt)
        return None if isinstance(error, MessageRejected) else next_attempt

    async def attempt(self, event: str, delivery_id: str, body: JsonBody) -> DeliveryError | None:
        """One bounded send; the error it ended with, or None when delivered."""
        timeout = self.policy.send_timeout
        try:
            await asyncio.wait_for(self.sender.send(event, delivery_id, body), timeout)
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"no answer within {timeout:g}s")
        except Exception as exc:  # a bug: logged loudly, and the row still backs off
            log.exception("alert_send_bug channel=%s delivery=%s", self.channel, delivery_id)
            return DeliveryError(f"internal error: {type(exc).__name__}")
        return None

    def delivered(self, alerts: Sequence[OutboxAlert]) -> None:
        for alert in alerts:
            self.store.mark_sent(alert.id, attempts=alert.attempts + 1, sent_at=self.now)
            self.sent.append(alert.id)
        self.messages += 1

    def after_failure(
        self, alert: OutboxAlert, error: DeliveryError, due: datetime, next_attempt: datetime
    ) -> None:
        """Retry later, or give up once 24 h have passed since the alert was due."""
        message = str(error)
        self.error = message
        attempts = alert.attempts + 1
        if self.now - due >= GIVE_UP_AFTER:
            self.give_up(alert, message, attempts=attempts)
            return
        self.store.mark_retry(
            alert.id, attempts=attempts, next_attempt=next_attempt, last_error=message
        )
        self.retrying.append(alert.id)
        log.warning(
            "alert_retry channel=%s alert=%s attempts=%d next=%s error=%s",
            self.channel,
            alert.id,
            attempts,
            next_attempt.isoformat(),
            message,
        )

    def give_up(self, alert: OutboxAlert, message: str, *, attempts: int) -> None:
        self.store.mark_failed(alert.id, attempts=attempts, last_error=message)
        self.failed.append(alert.id)
        log.error(
            "alert_failed channel=%s alert=%s attempts=%d error=%s",
            self.channel,
            alert.id,
            attempts,
            message,
        )
