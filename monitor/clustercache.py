"""The in-process clusterer as a cache of what the database holds.

Several instances may store articles into one database. Clustering rounds are
serialised by the storage's clustering lock and numbered (``articles.cluster_seq``);
under the lock, a round first replays the rounds other instances stored since this
cache last looked, so every instance decides from the same stories, document
frequencies and centroids. Built lazily: a round with nothing new (all 304s) never pays
for replaying the story window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from monitor.config import Config
from monitor.heap import release_free_memory
from monitor.model import Article, StoryDecision
from storage.store import Store

if TYPE_CHECKING:
    from monitor.cluster import Clusterer


def build_clusterer(cfg: Config, store: Store, now: datetime) -> Clusterer:
    """A clusterer warmed with the stored articles still inside the story window."""
    from monitor.cluster import Clusterer  # on the first round that stores: not for 304s

    clusterer = Clusterer(window=cfg.settings.story_window)
    clusterer.replay(
        (s.article, s.story_id, s.entities)
        for s in store.articles.recent(clusterer.memory_start(now))
    )
    release_free_memory()  # what the warm start read and dropped: texts, rows
    return clusterer


class ClusterCache:
    """``begin_round`` (under the lock) -> ``place`` ... -> ``end_round`` once written."""

    def __init__(self, cfg: Config, store: Store) -> None:
        self._cfg = cfg
        self._store = store
        self._clusterer: Clusterer | None = None
        self._seen = 0  # the last round the in-memory clusterer holds
        self._stored = 0  # the last round stored in the database, read under the lock

    def begin_round(self) -> int:
        """Read the last stored round (call under the clustering lock); the number the
        articles of this round get."""
        self._stored = self._store.articles.cluster_round()
        return self._stored + 1

    def end_round(self, seq: int, *, stored_new: bool) -> None:
        """This round is written: its new articles (if any) are stored as round ``seq``.

        The round's parsed feeds and plan are garbage now: their heap pages go back.
        """
        if self._clusterer is not None and stored_new:
            self._seen = seq
            release_free_memory()

    def _get(self) -> Clusterer:
        if self._clusterer is None or self._stored < self._seen:
            # first use, or the database went back (restored from a backup): start over
            self._clusterer = build_clusterer(self._cfg, self._store, datetime.now(UTC))
        elif self._stored > self._seen:
            clusterer = self._clusterer
            since = clusterer.memory_start(datetime.now(UTC))
            clusterer.replay(
                (s.article, s.story_id, s.entities)
                for s in self._store.articles.recent(since, after_round=self._seen)
            )
        self._seen = self._stored
        return self._clusterer

    def place(
        self, article: Article, entities: Sequence[str], new_story_id: Callable[[], str]
    ) -> StoryDecision:
        return self._get().place(article, entities, new_story_id)

    def story_title(self, story_id: str) -> str | None:
        return self._get().story_title(story_id)
