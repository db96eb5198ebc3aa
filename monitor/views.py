"""The JSON shapes of the contract for `stories`, `feeds` and `alerts` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitor.model import OutboxAlert
from storage.records import FeedState, StoredArticle, StoryView


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def story_json(story: StoryView, *, explain: bool = False) -> dict[str, Any]:
    return {
        "id": story.id,
        "title": story.title,
        "first_seen": rfc3339(story.first_seen),
        "last_seen": rfc3339(story.last_seen),
        "sources": story.sources,
        "entities": list(story.entities),
        "articles": [article_json(a, explain=explain) for a in story.articles],
    }


def article_json(a: StoredArticle, *, explain: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "url": a.article.url,
        "title": a.article.title,
        "feed": a.feed,
        "published": rfc3339(a.article.published),
    }
    if explain:
        out["reason"] = {"method": a.method, "score": round(a.score, 4), "shared": list(a.shared)}
    return out


def feed_json(
    url: str, name: str | None, enabled_in_config: bool, st: FeedState | None
) -> dict[str, Any]:
    return {
        "name": name or (st.title if st else None) or url,
        "url": url,
        "redirected_to": st.redirected_to if st else None,
        "enabled": enabled_in_config and (st.enabled if st else True),
        "disabled_reason": st.disabled_reason if st else None,
        "last_fetch": rfc3339(st.last_fetch) if st else None,
        "last_status": st.last_status if st else None,
        "last_error": st.last_error if st else None,
        "consecutive_errors": st.consecutive_errors if st else 0,
        "next_poll": rfc3339(st.next_poll) if st else None,
        "articles": st.articles if st else 0,
        "polled_by": st.polled_by if st else None,
    }


def alert_json(a: OutboxAlert) -> dict[str, Any]:
    return {
        "id": a.id,
        "channel": a.channel,
        "event": a.event,
        "entity": a.entity,
        "story_id": a.story_id,
        "state": a.state,
        "attempts": a.attempts,
        "created_at": rfc3339(a.created_at),
        "next_attempt": rfc3339(a.next_attempt) if a.state == "pending" else None,
        "last_error": a.last_error,
    }
