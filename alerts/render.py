"""Pure rendering of alerts: the JSON bodies of the contract and the email message.

Nothing here does I/O beyond reading the bundled templates. A body is built from the
outbox row (the alert's identity) and a snapshot of its story or feed taken at the
moment of the attempt, so a late delivery shows the fuller story.

    story_body / feed_body / digest_body / sample_body  ->  dict (the webhook body)
    json_bytes(body)                                     ->  the exact bytes POSTed and signed
    render_email(body, sender=..., to=...)               ->  EmailMessage (plain + HTML)
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from monitor.model import ArticleSnapshot, FeedSnapshot, OutboxAlert, StorySnapshot

if TYPE_CHECKING:
    import jinja2

JsonBody = dict[str, Any]

MAX_ARTICLES = 20  # a body carries at most the 20 newest articles, plus "more": N
MAX_SUMMARY = 500  # characters of plain-text summary per article
MAX_SUBJECT_TITLE = 150  # characters of story title in a subject line
MESSAGE_ID_DOMAIN = "feed-monitor"

_SPACE = re.compile(r"\s+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def rfc3339(moment: datetime) -> str:
    """``2026-11-28T07:01:02Z``: UTC, whole seconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def plain_summary(text: str, limit: int = MAX_SUMMARY) -> str:
    """Whitespace collapsed; at most ``limit`` characters, cut at a word with an ellipsis."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _article(article: ArticleSnapshot) -> JsonBody:
    return {
        "title": article.title,
        "url": article.url,
        "feed": article.feed,
        "published": rfc3339(article.published),
        "summary": plain_summary(article.summary),
    }


def story_body(alert: OutboxAlert, story: StorySnapshot) -> JsonBody:
    """The ``story.new`` body of the contract.

    ``story.articles`` holds at most the 20 newest articles, in ascending ``published``
    order; when older ones were left out, ``story.more`` says how many.
    """
    ordered = sorted(story.articles, key=lambda a: a.published)
    shown = ordered[-MAX_ARTICLES:]
    story_part: JsonBody = {
        "id": story.id,
        "title": story.title,
        "first_seen": rfc3339(story.first_seen),
        "sources": story.sources,
        "articles": [_article(a) for a in shown],
    }
    if len(ordered) > len(shown):
        story_part["more"] = len(ordered) - len(shown)
    return {
        "id": alert.id,
        "event": alert.event,
        "created_at": rfc3339(alert.created_at),
        "entity": {"name": alert.entity, "matched": list(alert.matched)},
        "story": story_part,
    }


def feed_body(alert: OutboxAlert, feed: FeedSnapshot) -> JsonBody:
    """The ``feed.broken`` / ``feed.recovered`` body of the contract."""
    return {
        "id": alert.id,
        "event": alert.event,
        "created_at": rfc3339(alert.created_at),
        "feed": {
            "name": feed.name,
            "url": feed.url,
            "last_error": feed.last_error,
            "failing_since": _optional_time(feed.failing_since),
        },
    }


def digest_body(digest_id: str, created_at: datetime, bodies: Sequence[JsonBody]) -> JsonBody:
    """``{"id", "event": "digest", "created_at", "alerts": [<story.new bodies>]}``."""
    return {
        "id": digest_id,
        "event": "digest",
        "created_at": rfc3339(created_at),
        "alerts": list(bodies),
    }


def sample_body(alert_id: str, now: datetime) -> JsonBody:
    """A story-shaped body with ``event: test``, for ``monitor test-alert``."""
    return {
        "id": alert_id,
        "event": "test",
        "created_at": rfc3339(now),
        "entity": {"name": "Sample Entity", "matched": ["Sample Entity"]},
        "story": {
            "id": "s_sample",
            "title": "Test alert from feed-monitor",
            "first_seen": rfc3339(now),
            "sources": 1,
            "articles": [
                {
                    "title": "Test alert from feed-monitor",
                    "url": "https://example.org/feed-monitor/test-alert",
                    "feed": "feed-monitor",
                    "published": rfc3339(now),
                    "summary": "If you can read this, the channel delivers alerts.",
                }
            ],
        },
    }


def json_bytes(body: Mapping[str, Any]) -> bytes:
    """The one encoding of a body: compact UTF-8 JSON, keys in body order.

    The webhook POSTs exactly these bytes and signs exactly these bytes; the log
    channel writes them as one line (JSON never contains a raw newline).
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def is_web_url(url: object) -> bool:
    """True for an absolute http(s) URL: the only kind an email turns into a link."""
    if not isinstance(url, str) or not url or _SPACE.search(url):
        return False
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _display_time(value: object) -> str:
    """``2026-11-28T07:01:02Z`` -> ``2026-11-28 07:01 UTC`` (anything else unchanged)."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def _environment() -> jinja2.Environment:
    """Made on the first e-mail: a poll that sends none does not import Jinja2 (~40 ms)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("alerts", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.tests["web_url"] = is_web_url
    env.filters["when"] = _display_time
    return env


_TEMPLATES = {
    "story.new": "story",
    "test": "story",
    "digest": "digest",
    "feed.broken": "feed",
    "feed.recovered": "feed",
}


def _one_line(text: object, limit: int | None = None) -> str:
    flat = _SPACE.sub(" ", str(text)).strip()
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def subject(body: Mapping[str, Any]) -> str:
    """``[monitor] <entity>: <story title>``, ``[monitor] N new stories``, ...

    Always one line: feed text cannot inject headers.
    """
    event = body["event"]
    if event == "digest":
        count = len(body["alerts"])
        return f"[monitor] {count} new {'story' if count == 1 else 'stories'}"
    if event in ("feed.broken", "feed.recovered"):
        state = "broken" if event == "feed.broken" else "recovered"
        feed = body["feed"]
        return f"[monitor] feed {state}: {_one_line(feed['name'] or feed['url'], 200)}"
    entity = _one_line(body["entity"]["name"], 100)
    title = _one_line(body["story"]["title"], MAX_SUBJECT_TITLE)
    prefix = "[monitor] test: " if event == "test" else "[monitor] "
    return f"{prefix}{entity}: {title}"


def message_id(delivery_id: str) -> str:
    """``<al_...@feed-monitor>``: stable, so a re-sent alert keeps its Message-ID."""
    return f"<{_ID_UNSAFE.sub('-', delivery_id)}@{MESSAGE_ID_DOMAIN}>"


def render_email(
    body: Mapping[str, Any],
    *,
    sender: str,
    to: Sequence[str],
    event: str | None = None,
    delivery_id: str | None = None,
) -> EmailMessage:
    """One ``multipart/alternative`` message (plain text, then HTML) for a body.

    ``event`` and ``delivery_id`` default to the body's own ``event`` and ``id``.
    Every piece of feed text is escaped in the HTML part; only http(s) URLs become links.
    """
    event = event or str(body["event"])
    delivery_id = delivery_id or str(body["id"])
    name = _TEMPLATES.get(event)
    if name is None:
        raise ValueError(f"no email template for event {event!r}")
    context = {"body": body, "event": event}
    plain = _environment().get_template(f"{name}.txt").render(context)
    html = _environment().get_template(f"{name}.html").render(context)

    message = EmailMessage()
    message["Subject"] = subject(body)
    message["From"] = sender
    message["To"] = ", ".join(to)
    created = _body_time(body)
    if created is not None:
        message["Date"] = format_datetime(created, usegmt=True)
    message["Message-ID"] = message_id(delivery_id)
    message["X-Monitor-Event"] = event
    message["X-Monitor-Delivery"] = delivery_id
    message.set_content(plain, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def _body_time(body: Mapping[str, Any]) -> datetime | None:
    try:
        moment = datetime.strptime(str(body.get("created_at")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)
