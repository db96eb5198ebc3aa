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
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

__all__ = ["Doc", "Nearest", "Story", "StoryIndex", "dot", "dot_doc"]

_EMPTY: frozenset[str] = frozenset()


@dataclass(eq=False, slots=True)
class Doc:
    """One article in memory: only what is read after it was recorded.

    Tens of thousands of these live for days, so the vector is a tuple of (interned)
    terms and an array of weights rather than a dict of float objects.
    """

    serial: int
    story: Story
    title: str
    terms: tuple[str, ...]  # terms of its unit-length TF-IDF vector (idf as when added)
    weights: array[float]  # their weights, in the same order
    extra: tuple[str, ...]  # its other terms (weight 0: left out of the vector), usually ()
    names: tuple[str, ...]  # folded name-like phrases
    sketch: array[int]  # shingle sketch
    keys: tuple[str, ...]  # exact keys: "url:...", "hash:..."
    kickers: tuple[tuple[str, str], ...]  # (feed url, title kicker)

    def vector(self) -> dict[str, float]:
        """The TF-IDF vector as a dict, in the order it was built."""
        return dict(zip(self.terms, self.weights, strict=True))


@dataclass(eq=False, slots=True)
class Story:
    """One story in memory, with what its members have in common.

    Most stories have one article: their centroid and term counts are that article's,
    so they are only built (and kept) once a second member arrives.
    """

    id: str
    serial: int  # creation order, for deterministic ties
    members: list[Doc] = field(default_factory=list)
    centroid_norm2: float = 0.0
    first_published: datetime | None = None
    last_published: datetime | None = None
    names: frozenset[str] = _EMPTY  # name-like phrases of its members
    entities: frozenset[str] = _EMPTY  # tracked entities its members mention
    numbers: frozenset[str] = _EMPTY
    feeds: tuple[str, ...] = ()  # feeds of its members (few: a tuple is smaller than a set)
    vector_sum: dict[str, float] | None = None  # sum of member vectors, from two members on
    term_members: Counter[str] | None = None  # term -> members containing it, likewise

    def centroid(self) -> dict[str, float]:
        """Sum of the member vectors (a fresh dict while the story has one member)."""
        if self.vector_sum is not None:
            return self.vector_sum
        return self.members[0].vector() if self.members else {}

    def terms(self) -> Mapping[str, int]:
        """Term -> members containing it."""
        if self.term_members is not None:
            return self.term_members
        if not self.members:
            return {}
        doc = self.members[0]
        return dict.fromkeys(chain(doc.terms, doc.extra), 1)

    def apart(self, published: datetime) -> timedelta:
        """Time from ``published`` to the story's span (zero inside it)."""
        assert self.first_published is not None and self.last_published is not None
        if published < self.first_published:
            return self.first_published - published
        if published > self.last_published:
            return published - self.last_published
        return timedelta(0)


@dataclass(frozen=True, slots=True)
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
        # term -> (doc serial, the term's weight in that doc) pairs, flat, oldest first: an
        # array of doubles (serials stay exact) is far smaller than a list of objects
        self._postings: dict[str, array[float]] = {}
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
            postings = self._postings.get(term)
            if postings is None:
                continue
            newest = len(postings) - 2
            for i in range(min(postings_scan, len(postings) // 2)):
                at = newest - 2 * i
                serial = int(postings[at])
                if serial in self.docs:
                    partial[serial] = partial.get(serial, 0.0) + weight * postings[at + 1]
        top = heapq.nsmallest(max_candidates, partial.items(), key=lambda i: (-i[1], i[0]))
        best: dict[str, Nearest] = {}
        for serial, _ in top:
            doc = self.docs[serial]
            if not self.joinable(doc.story, published):
                continue
            cosine = dot_doc(vector, doc)
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

    def add(
        self,
        doc: Doc,
        *,
        published: datetime,
        feed: str,
        numbers: Collection[str],
        entities: Collection[str],
    ) -> None:
        """Record ``doc`` (built with :meth:`story_for` and :meth:`next_serial`).

        What only its story needs (when it was published, its feed, numbers, entities)
        is passed along instead of being kept in the doc.
        """
        self.advance(published)
        self.docs[doc.serial] = doc
        self._attach(doc.story, doc, published, feed, numbers, entities)
        for key in doc.keys:
            self._keys[key] = doc.serial
        serial = float(doc.serial)
        for term, weight in zip(doc.terms, doc.weights, strict=True):
            postings = self._postings.get(term)
            if postings is None:
                self._postings[term] = array("d", (serial, weight))
            else:
                postings.append(serial)
                postings.append(weight)
        self.n_docs += 1
        self.df.update(doc.terms)
        self.df.update(doc.extra)
        self.name_df.update(doc.names)
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

    def _attach(
        self,
        story: Story,
        doc: Doc,
        published: datetime,
        feed: str,
        numbers: Collection[str],
        entities: Collection[str],
    ) -> None:
        story.members.append(doc)
        if len(story.members) == 2:  # the first member's centroid and counts were implicit
            story.vector_sum = story.members[0].vector()
            story.term_members = Counter(story.terms())
        centroid = story.vector_sum
        for term, weight in zip(doc.terms, doc.weights, strict=True):
            old = 0.0
            if centroid is not None:
                old = centroid.get(term, 0.0)
                centroid[term] = old + weight
            story.centroid_norm2 += 2.0 * old * weight + weight * weight
        if story.term_members is not None:
            story.term_members.update(doc.terms)
            story.term_members.update(doc.extra)
        if doc.names:
            story.names = story.names | frozenset(doc.names)
        if entities:
            story.entities = story.entities | frozenset(entities)
        if numbers:
            story.numbers = story.numbers | frozenset(numbers)
        if feed not in story.feeds:
            story.feeds = (*story.feeds, feed)
        if story.first_published is None or published < story.first_published:
            story.first_published = published
        if story.last_published is None or published > story.last_published:
            story.last_published = published
            heapq.heappush(self._expiry, (published, story.serial, story.id))

    def _evict(self, story: Story) -> None:
        del self.stories[story.id]
        for doc in story.members:
            del self.docs[doc.serial]
            for key in doc.keys:
                if self._keys.get(key) == doc.serial:
                    del self._keys[key]
            self.df.subtract(doc.terms)
            self.df.subtract(doc.extra)
            self.name_df.subtract(doc.names)
            self.kickers.subtract(doc.kickers)
            self.n_docs -= 1
        self._evicted_since_sweep += len(story.members)

    def _sweep(self) -> None:
        """Drop postings of evicted articles, and counts that fell to zero."""
        self.df = +self.df  # unary plus keeps the positive counts only
        self.name_df = +self.name_df
        self.kickers = +self.kickers
        live = self.docs
        for term, postings in list(self._postings.items()):
            pairs = zip(postings[::2], postings[1::2], strict=True)
            kept = array("d", chain.from_iterable(p for p in pairs if int(p[0]) in live))
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


def dot_doc(a: dict[str, float], doc: Doc, *, doc_first: bool = False) -> float:
    """``dot(a, doc.vector())`` (``dot(doc.vector(), a)`` with ``doc_first``), summed in
    the same order, so to the same last bit, without building the doc's dict when the
    doc is the vector iterated over."""
    n = len(doc.terms)
    if n <= len(a) if doc_first else n < len(a):
        return sum(w * a.get(t, 0.0) for t, w in zip(doc.terms, doc.weights, strict=True))
    vector = doc.vector()
    return sum(w * vector.get(t, 0.0) for t, w in a.items())
