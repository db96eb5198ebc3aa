"""The clusterer's memory: the stories of the last window, an inverted index, frequencies.

Pure, in memory.  :class:`StoryIndex` holds the articles (:class:`Doc`) and stories
(:class:`Story`) that new articles can still join, an inverted index from terms to
articles, exact keys (canonical URL, content hash), document frequencies of terms and
name-like phrases, and the title kickers each feed has used.  It evicts a story once
its latest article is older than the window plus a slack for late arrivals, and its
articles leave every structure with it: memory and the cost of a lookup depend on the
articles of the last few days, not on everything ever stored.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.textfeatures import TextFeatures

__all__ = ["Doc", "Nearest", "Story", "StoryIndex", "dot"]


@dataclass(eq=False)
class Doc:
    """One article in memory."""

    serial: int
    story: Story
    feed_url: str
    title: str
    published: datetime
    vector: dict[str, float]  # unit-length TF-IDF vector (idf as when it was added)
    features: TextFeatures
    entities: frozenset[str]  # tracked entities it mentions
    keys: tuple[str, ...]  # exact keys: "url:...", "hash:..."
    kickers: tuple[tuple[str, str], ...]  # (feed url, title kicker)


@dataclass(eq=False)
class Story:
    """One story in memory, with what its members have in common."""

    id: str
    serial: int  # creation order, for deterministic ties
    members: list[Doc] = field(default_factory=list)
    centroid: dict[str, float] = field(default_factory=dict)  # sum of member vectors
    centroid_norm2: float = 0.0
    first_published: datetime | None = None
    last_published: datetime | None = None
    terms: Counter[str] = field(default_factory=Counter)  # term -> members containing it
    names: Counter[str] = field(default_factory=Counter)
    entities: Counter[str] = field(default_factory=Counter)
    numbers: Counter[str] = field(default_factory=Counter)
    feeds: set[str] = field(default_factory=set)

    def apart(self, published: datetime) -> timedelta:
        """Time from ``published`` to the story's span (zero inside it)."""
        assert self.first_published is not None and self.last_published is not None
        if published < self.first_published:
            return self.first_published - published
        if published > self.last_published:
            return published - self.last_published
        return timedelta(0)


@dataclass(frozen=True)
class Nearest:
    """A joinable story and its member closest to the query."""

    story: Story
    member: Doc
    cosine: float


class StoryIndex:
    """Stories and articles of the last window, looked up by rare terms and exact keys."""

    def __init__(self, window: timedelta, slack: timedelta, idf_prior: float) -> None:
        self.window = window
        self.slack = slack
        self.idf_prior = idf_prior
        self.n_docs = 0
        self.df: Counter[str] = Counter()  # term -> articles in memory containing it
        self.name_df: Counter[str] = Counter()  # name-like phrase -> articles
        self.kickers: Counter[tuple[str, str]] = Counter()  # (feed, title kicker) -> articles
        self.stories: dict[str, Story] = {}
        self.docs: dict[int, Doc] = {}
        self._serial = 0
        self._postings: dict[str, list[int]] = {}  # term -> doc serials, oldest first
        self._keys: dict[str, int] = {}  # exact key -> doc serial
        self._expiry: list[tuple[datetime, int, str]] = []  # heap: (last published, serial, id)
        self._high_water: datetime | None = None
        self._evicted_since_sweep = 0

    # -- reading ------------------------------------------------------------------------

    def idf(self, term: str, df: Counter[str] | None = None) -> float:
        counts = self.df if df is None else df
        return math.log((self.n_docs + self.idf_prior) / (counts[term] + 1.0))

    def key_story(self, key: str) -> Story | None:
        serial = self._keys.get(key)
        doc = self.docs.get(serial) if serial is not None else None
        return doc.story if doc is not None else None

    def joinable(self, story: Story, published: datetime) -> bool:
        """Whether the story's nearest ``published`` is within the window of ``published``.

        Members are never more than a window apart, so the nearest one is within the
        window exactly when ``published`` is within a window of the story's span.
        """
        if story.first_published is None or story.last_published is None:
            return False
        earliest = story.first_published - self.window
        return earliest <= published <= story.last_published + self.window

    def nearest(
        self,
        vector: dict[str, float],
        keys: Iterable[str],
        published: datetime,
        *,
        query_terms: int,
        postings_scan: int,
        max_candidates: int,
    ) -> list[Nearest]:
        """Joinable stories of the articles most like ``vector``, oldest story first.

        The articles sharing an exact key are always looked at; the others come from
        the postings of the ``query_terms`` rarest terms that other articles have
        (``postings_scan`` newest each), the ``max_candidates`` best by partial dot
        product being scored in full.
        """
        partial: dict[int, float] = {}
        for key in keys:
            serial = self._keys.get(key)
            if serial is not None:
                partial[serial] = partial.get(serial, 0.0) + 10.0  # always scored
        indexed = [term for term in vector if self.df[term] > 0]
        for term in sorted(indexed, key=lambda t: (self.df[t], t))[:query_terms]:
            weight = vector[term]
            for i, serial in enumerate(reversed(self._postings.get(term, ()))):
                if i >= postings_scan:
                    break
                doc = self.docs.get(serial)
                if doc is not None:
                    partial[serial] = partial.get(serial, 0.0) + weight * doc.vector[term]
        top = heapq.nsmallest(max_candidates, partial.items(), key=lambda i: (-i[1], i[0]))
        best: dict[str, Nearest] = {}
        for serial, _ in top:
            doc = self.docs[serial]
            if not self.joinable(doc.story, published):
                continue
            cosine = dot(vector, doc.vector)
            seen = best.get(doc.story.id)
            if seen is None or cosine > seen.cosine:
                best[doc.story.id] = Nearest(doc.story, doc, cosine)
        return sorted(best.values(), key=lambda n: n.story.serial)

    # -- writing ------------------------------------------------------------------------

    def story_for(self, story_id: str) -> Story:
        """The story ``story_id``, created when not in memory."""
        story = self.stories.get(story_id)
        if story is None:
            self._serial += 1
            story = Story(id=story_id, serial=self._serial)
            self.stories[story_id] = story
        return story

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def add(self, doc: Doc) -> None:
        """Record ``doc`` (built with :meth:`story_for` and :meth:`next_serial`)."""
        self.advance(doc.published)
        self.docs[doc.serial] = doc
        self._attach(doc.story, doc)
        for key in doc.keys:
            self._keys[key] = doc.serial
        for term in doc.vector:
            self._postings.setdefault(term, []).append(doc.serial)
        self.n_docs += 1
        self.df.update(doc.features.terms.keys())
        self.name_df.update(doc.features.names.keys())
        self.kickers.update(doc.kickers)

    def advance(self, published: datetime) -> None:
        """Move the high-water mark and evict stories nothing can join any more."""
        if self._high_water is not None and published <= self._high_water:
            return
        self._high_water = published
        horizon = published - self.window - self.slack
        while self._expiry and self._expiry[0][0] < horizon:
            last, _serial, story_id = heapq.heappop(self._expiry)
            story = self.stories.get(story_id)
            if story is not None and story.last_published == last:  # else superseded
                self._evict(story)
        if self._evicted_since_sweep > max(len(self.docs), 1000):
            self._sweep()

    def _attach(self, story: Story, doc: Doc) -> None:
        story.members.append(doc)
        for term, weight in doc.vector.items():
            old = story.centroid.get(term, 0.0)
            story.centroid[term] = old + weight
            story.centroid_norm2 += 2.0 * old * weight + weight * weight
        story.terms.update(doc.features.terms.keys())
        story.names.update(doc.features.names.keys())
        story.entities.update(doc.entities)
        story.numbers.update(doc.features.numbers)
        story.feeds.add(doc.feed_url)
        if story.first_published is None or doc.published < story.first_published:
            story.first_published = doc.published
        if story.last_published is None or doc.published > story.last_published:
            story.last_published = doc.published
            heapq.heappush(self._expiry, (doc.published, story.serial, story.id))

    def _evict(self, story: Story) -> None:
        del self.stories[story.id]
        for doc in story.members:
            del self.docs[doc.serial]
            for key in doc.keys:
                if self._keys.get(key) == doc.serial:
                    del self._keys[key]
            self.df.subtract(doc.features.terms.keys())
            self.name_df.subtract(doc.features.names.keys())
            self.kickers.subtract(doc.kickers)
            self.n_docs -= 1
        self._evicted_since_sweep += len(story.members)

    def _sweep(self) -> None:
        """Drop postings of evicted articles, and counts that fell to zero."""
        self.df = +self.df  # unary plus keeps the positive counts only
        self.name_df = +self.name_df
        self.kickers = +self.kickers
        live = self.docs
        for term in list(self._postings):
            kept = [serial for serial in self._postings[term] if serial in live]
            if kept:
                self._postings[term] = kept
            else:
                del self._postings[term]
        self._evicted_since_sweep = 0


def dot(a: dict[str, float], b: dict[str, float]) -> float:
    """Dot product of two sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())
