"""The storage facade: one object the rest of the code holds, grouping the repositories."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StorageError
from storage.articles import ArticleRepo
from storage.engine import make_engine, migrate, safe_url
from storage.feeds import FeedRepo
from storage.outbox import OutboxRepo
from storage.stories import StoryRepo


class Store:
    """Opened once per process; every method opens its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.feeds = FeedRepo(engine)
        self.articles = ArticleRepo(engine)
        self.stories = StoryRepo(engine)
        self.outbox = OutboxRepo(engine)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        """Connect and bring the schema up to date (migrations run at every start-up)."""
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StorageError(f"cannot open database {safe_url(url)}: {_first_line(exc)}") from exc
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
