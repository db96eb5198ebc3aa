"""Story views for the CLI and alerts, and retention."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, delete, exists, select, update

from storage.articles import chunks, select_stored, stream_stored
from storage.records import StoredArticle, StoryView
from storage.tables import (
    articles,
    mentions,
    outbox,
    seen_guids,
    seen_urls,
    stories,
    story_entities,
)


class StoryRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def query(
        self,
        *,
        since: datetime | None,
        entity: str | None = None,
        limit: int | None = None,
        story_ids: Sequence[str] | None = None,
    ) -> list[StoryView]:
        """Stories newest first by ``last_seen``, with their articles in ``published`` order."""
        stmt = select(stories).order_by(stories.c.last_seen.desc(), stories.c.id)
        if since is not None:
            stmt = stmt.where(stories.c.last_seen >= since)
        if story_ids is not None:
            stmt = stmt.where(stories.c.id.in_(list(story_ids)))
        if entity is not None:
            stmt = stmt.where(
                exists().where(
                    story_entities.c.story_id == stories.c.id, story_entities.c.entity == entity
                )
            )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            found = conn.execute(stmt).all()
            by_story: dict[str, list[StoredArticle]] = {s.id: [] for s in found}
            ids = list(by_story)
            for part in chunks(ids):
                arts = stream_stored(
                    conn,
                    select_stored()
                    .where(articles.c.story_id.in_(list(part)))
                    .order_by(articles.c.published, articles.c.fetched, articles.c.id),
                )
                for a in arts:
                    by_story[a.story_id].append(a)
            return [
                StoryView(
                    id=s.id,
                    title=s.title,
                    first_seen=s.first_seen,
                    last_seen=s.last_seen,
                    sources=s.sources,
                    entities=tuple(sorted({e for a in by_story[s.id] for e in a.entities})),
                    articles=tuple(by_story[s.id]),
                )
                for s in found
            ]

    def get(self, story_id: str) -> StoryView | None:
        found = self.query(since=None, story_ids=[story_id])
        return found[0] if found else None

    def prune(self, before: datetime) -> int:
        """Delete stories last seen before ``before`` (never one with a pending alert).

        Dedupe keys stay, pointing nowhere, so a pruned item still listed in a feed is not new.
        """
        with self.engine.begin() as conn:
            pending = select(outbox.c.story_id).where(
                outbox.c.state == "pending", outbox.c.story_id.is_not(None)
            )
            old = list(
                conn.execute(
                    select(stories.c.id).where(
                        stories.c.last_seen < before, stories.c.id.not_in(pending)
                    )
                ).scalars()
            )
            for part in chunks(old):
                art_ids = select(articles.c.id).where(articles.c.story_id.in_(list(part)))
                conn.execute(
                    update(seen_guids)
                    .where(seen_guids.c.article_id.in_(art_ids))
                    .values(article_id=None)
                )
                conn.execute(
                    update(seen_urls)
                    .where(seen_urls.c.article_id.in_(art_ids))
                    .values(article_id=None)
                )
                conn.execute(delete(mentions).where(mentions.c.article_id.in_(art_ids)))
                conn.execute(delete(stories).where(stories.c.id.in_(list(part))))
            return len(old)
