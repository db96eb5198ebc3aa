"""Story views for the CLI and alerts, and retention."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, and_, delete, exists, select, update
from sqlalchemy.orm import Session

from storage.articles import chunks, load_articles
from storage.records import StoredArticle, StoryView
from storage.tables import Article, Feed, Mention, Outbox, SeenGuid, SeenUrl, Story, StoryEntity


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
        stmt = select(Story).order_by(Story.last_seen.desc(), Story.id)
        if since is not None:
            stmt = stmt.where(Story.last_seen >= since)
        if story_ids is not None:
            stmt = stmt.where(Story.id.in_(list(story_ids)))
        if entity is not None:
            stmt = stmt.where(
                exists().where(and_(StoryEntity.story_id == Story.id, StoryEntity.entity == entity))
            )
        if limit is not None:
            stmt = stmt.limit(limit)
        with Session(self.engine) as session:
            stories = list(session.scalars(stmt).all())
            by_story: dict[str, list[StoredArticle]] = {s.id: [] for s in stories}
            ids = list(by_story)
            for part in chunks(ids):
                arts = load_articles(
                    session,
                    select(Article, Feed.url, Feed.name, Feed.title)
                    .join(Feed, Feed.id == Article.feed_id)
                    .where(Article.story_id.in_(list(part)))
                    .order_by(Article.published, Article.fetched, Article.id),
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
                for s in stories
            ]

    def get(self, story_id: str) -> StoryView | None:
        found = self.query(since=None, story_ids=[story_id])
        return found[0] if found else None

    def prune(self, before: datetime) -> int:
        """Delete stories last seen before ``before`` (never one with a pending alert).

        Dedupe keys stay, pointing nowhere, so a pruned item still listed in a feed is not new.
        """
        with self.engine.begin() as conn:
            pending = select(Outbox.story_id).where(
                Outbox.state == "pending", Outbox.story_id.is_not(None)
            )
            old = list(
                conn.execute(
                    select(Story.id).where(Story.last_seen < before, Story.id.not_in(pending))
                ).scalars()
            )
            for part in chunks(old):
                art_ids = select(Article.id).where(Article.story_id.in_(list(part)))
                conn.execute(
                    update(SeenGuid).where(SeenGuid.article_id.in_(art_ids)).values(article_id=None)
                )
                conn.execute(
                    update(SeenUrl).where(SeenUrl.article_id.in_(art_ids)).values(article_id=None)
                )
                conn.execute(delete(Mention).where(Mention.article_id.in_(art_ids)))
                conn.execute(delete(Story).where(Story.id.in_(list(part))))
            return len(old)
