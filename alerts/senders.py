"""What a configured channel is to the delivery worker: a Sender and a ChannelPolicy.

    Sender.send(event, delivery_id, body)   returns, or raises DeliveryError
      DeliveryError          the channel is unusable now (down, refusing, timing out):
                             the worker stops the channel's pass and retries later
      └── MessageRejected    the receiver is up but refused this one message
                             (e.g. HTTP 400/413/422, SMTP 5xx after DATA): the
                             alert is retried, the channel's other alerts go on

Senders are dumb: they neither retry nor decide; the outbox row is the truth. Their
error messages are precise and never carry a secret (SMTP password, webhook secret,
header values), and neither do their reprs.

``sender_for(channel_config, default_timeout=...)`` and ``policy_for(...)`` build them
for one channel of feeds.yaml (``EmailChannel``, ``WebhookChannel``, ``LogChannel`` of
monitor.config), reading its fields by name so this module does not depend on the
config classes. ``DigestSchedule`` says when a digest channel's periods end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.errors import DeliveryError

DEFAULT_SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_SEND_TIMEOUT = 60.0
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REDACTED = "***"


class Sender(Protocol):
    async def send(self, event: str, delivery_id: str, body: Mapping[str, Any]) -> None:
        """Deliver ``body`` once; raise DeliveryError (or MessageRejected) on failure.

        ``event`` is ``story.new``, ``digest``, ``feed.broken``, ``feed.recovered`` or
        ``test``; ``delivery_id`` is the alert (or digest) id the receiver can use to
        drop a repeat.
        """
        ...


class MessageRejected(DeliveryError):
    """The receiver answered but refused this particular message; the channel itself works."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced by ``***``.

    Secrets shorter than 4 characters are left alone: replacing them would mangle
    ordinary words, and error messages are built so as not to carry secrets anyway.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def reveal(value: object) -> str | None:
    """The plain value of a pydantic ``SecretStr`` (or any ``get_secret_value`` holder)."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        return str(getter())
    return str(value)


def seconds(value: object, default: float) -> float:
    """A timeout given as ``timedelta``, number or None (the default), in seconds."""
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"cannot read a timeout from {type(value).__name__}")


def setting(config: object, name: str, default: Any = None) -> Any:
    """``config.name`` for an object, ``config[name]`` for a mapping."""
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def channel_kind(channel: object) -> str:
    """``email``, ``webhook`` or ``log``: the ``type`` field, else what the fields show."""
    kind = setting(channel, "type")
    if isinstance(kind, str) and kind:
        return kind
    class_name = type(channel).__name__.lower()
    for candidate in ("email", "webhook", "log"):
        if class_name.startswith(candidate):
            return candidate
    if setting(channel, "smtp") is not None:
        return "email"
    if setting(channel, "url") is not None:
        return "webhook"
    return "log"


def sender_for(channel: object, *, default_timeout: float | timedelta = 30.0) -> Sender:
    """The sender for one configured channel.

    Webhook: ``url``, ``secret``, ``headers``, ``timeout`` (default ``default_timeout``).
    Email: ``to``, ``from_``, ``smtp`` (``host``, ``port``, ``security``, ``username``,
    ``password``, ``timeout``: for each SMTP socket operation, default ``default_timeout``).
    Log: ``path`` (None: stdout), already resolved against the config's directory.
    """
    # Imported here: the concrete senders import MessageRejected from this module, and a
    # config without e-mail channels need not import smtplib and the e-mail renderer.
    timeout = channel_timeout(channel, default_timeout)
    kind = channel_kind(channel)
    if kind == "webhook":
        from alerts.webhook import WebhookSender

        headers = setting(channel, "headers") or {}
        return WebhookSender(
            str(setting(channel, "url")),
            secret=reveal(setting(channel, "secret")),
            headers={str(k): reveal(v) or "" for k, v in headers.items()},
            timeout=timeout,
        )
    if kind == "email":
        from alerts.smtp import SmtpSender

        smtp = setting(channel, "smtp")
        security = str(setting(smtp, "security", "none") or "none")
        to = setting(channel, "to") or []
        return SmtpSender(
            str(setting(smtp, "host", "localhost")),
            int(setting(smtp, "port") or DEFAULT_SMTP_PORTS.get(security, 25)),
            sender=str(setting(channel, "from_") or setting(channel, "from")),
            to=[to] if isinstance(to, str) else [str(a) for a in to],
            security=security,
            username=reveal(setting(smtp, "username")),
            password=reveal(setting(smtp, "password")),
            timeout=timeout,
        )
    if kind == "log":
        from alerts.logfile import LogSender

        path = setting(channel, "path")
        return LogSender(None if path is None else Path(path))
    raise ValueError(f"unknown channel type {kind!r}")


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def epoch_aligned_end(moment: datetime, period: timedelta) -> datetime:
    """The first multiple of ``period`` since 1970-01-01T00:00Z strictly after ``moment``."""
    return EPOCH + (((utc(moment) - EPOCH) // period) + 1) * period


_DIGEST_AT = re.compile(r"^\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")


def parse_digest_at(text: str) -> tuple[time, tzinfo]:
    """``"08:00 Europe/Berlin"`` -> (08:00, that zone); without a zone, UTC."""
    found = _DIGEST_AT.match(text)
    if found is None:
        raise ValueError(f'digest_at "{text}": expected "HH:MM" or "HH:MM Area/City"')
    hour, minute, zone_name = int(found[1]), int(found[2]), found[3]
    if hour > 23 or minute > 59:
        raise ValueError(f'digest_at "{text}": no such time of day')
    if zone_name is None or zone_name.upper() in ("UTC", "Z"):
        return time(hour, minute), UTC
    try:
        return time(hour, minute), ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'digest_at "{text}": unknown time zone {zone_name!r}') from None


@dataclass(frozen=True)
class DigestSchedule:
    """When a digest channel's periods end.

    Without ``at``: at every multiple of ``period`` since 1970-01-01T00:00Z (``1h``: on
    the hour, ``1d``: at midnight UTC). With ``at`` (``digest_at``), local to ``zone``
    and following its daylight-saving changes: a period that divides a day ends at
    ``at`` each day and every ``period`` after it (``1d`` at "08:00 Europe/Berlin": 08:00
    Berlin time every day); a period of whole days ends at ``at`` on every
    ``period``-th day counted from 1970-01-01. Other periods ignore ``at``.
    """

    period: timedelta
    at: time | None = None
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, period: timedelta, digest_at: str | None) -> DigestSchedule:
        if period <= timedelta(0):
            raise ValueError("digest period must be positive")
        if digest_at is None:
            return cls(period)
        at, zone = parse_digest_at(digest_at)
        return cls(period, at, zone)

    def period_end(self, moment: datetime) -> datetime:
        """The end of the period holding ``moment``: the first boundary strictly after it."""
        moment = utc(moment)
        divides_day = DAY % self.period == timedelta(0)
        whole_days = self.period % DAY == timedelta(0)
        if self.at is None or not (divides_day or whole_days):
            return epoch_aligned_end(moment, self.period)
        today = moment.astimezone(self.zone).date()
        span = 1 if divides_day else self.period.days
        later = [b for b in self._boundaries(today, span) if b > moment]
        return min(later)

    def _boundaries(self, today: date, span: int) -> list[datetime]:
        assert self.at is not None
        steps = DAY // self.period if DAY % self.period == timedelta(0) else 1
        found = []
        for offset in range(-1, span + 1):
            day = today + timedelta(days=offset)
            if span > 1 and (day - EPOCH.date()).days % span:
                continue
            anchor = datetime.combine(day, self.at, tzinfo=self.zone).astimezone(UTC)
            found += [anchor + k * self.period for k in range(steps)]
        return found


@dataclass(frozen=True)
class ChannelPolicy:
    """How one channel batches and how long one send may take."""

    digest: DigestSchedule | None = None
    max_per_hour: int | None = None
    send_timeout: float = DEFAULT_SEND_TIMEOUT


def policy_for(channel: object, *, default_timeout: float | timedelta = 30.0) -> ChannelPolicy:
    """The policy of a configured channel.

    Reads ``digest`` (timedelta), ``digest_at`` (``"08:00 Europe/Berlin"``, or an object
    with ``at`` and ``zone``), ``max_per_hour``, and the send timeout (``timeout``, or
    ``smtp.timeout`` for email, else ``default_timeout``); absent fields mean "none".
    """
    period = setting(channel, "digest")
    if period is not None and not isinstance(period, timedelta):
        period = timedelta(seconds=seconds(period, 0.0))
    digest = None if period is None else digest_schedule(period, setting(channel, "digest_at"))
    limit = setting(channel, "max_per_hour")
    timeout = channel_timeout(channel, default_timeout)
    # A little over the sender's own timeout, so its more precise error usually wins.
    return ChannelPolicy(digest, None if limit is None else int(limit), timeout + 5.0)


def digest_schedule(period: timedelta, digest_at: object) -> DigestSchedule:
    """A schedule from a period and ``digest_at`` as text or as an (at, zone) object."""
    if digest_at is None or isinstance(digest_at, str):
        return DigestSchedule.parse(period, digest_at)
    at, zone = setting(digest_at, "at"), setting(digest_at, "zone", "UTC")
    if not isinstance(at, time):
        raise ValueError(f"digest_at: cannot read a time of day from {type(at).__name__}")
    return DigestSchedule.parse(period, f"{at:%H:%M} {zone}")


def channel_timeout(channel: object, default: float | timedelta) -> float:
    """Seconds one send may take: the channel's (or its SMTP server's) timeout, else default."""
    own = setting(channel, "timeout")
    smtp = setting(channel, "smtp")
    if own is None and smtp is not None:
        own = setting(smtp, "timeout")
    return seconds(own, seconds(default, 30.0))
