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

import hashlib
import heapq
import math
from array import array
from collections import Counter
from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

__all__ = ["Doc", "Nearest", "Story", "StoryIndex", "dot", "dot_doc", "exact_key"]

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
    keys: tuple[bytes, ...]  # exact keys (see exact_key)
    kickers: tuple[tuple[str, str], ...]  # (feed url, title kicker)

    def vector(self) -> dict[str, float]:
        """The TF-IDF vector as a dict, in the order it was built."""
        return dict(zip(self.terms, self.weights, strict=True))


@dataclass(eq=False, slots=True)
class Story:
    """One story in memory, with what its members have in common.

    Most stories have one article: their centroid and term counts are that article's,
    so they are only built (and kept) once a second member arrives.  Then each term of
    the member vectors gets a slot (in the order the terms first came), and the sum of
    its weights and the members containing it are kept in arrays at that slot: ~50
    bytes a term instead of a float object and entries in two dicts.
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
    # from two members on: term of a member vector -> slot, in first-seen order ...
    slots: dict[str, int] | None = None
    sums: array[float] | None = None  # ... sum of the members' weights of the term
    counts: array[int] | None = None  # ... members containing the term
    extra_counts: dict[str, int] | None = None  # terms in no member vector -> members

    def centroid(self) -> dict[str, float]:
        """Sum of the member vectors, as a fresh dict (in the order terms first came)."""
        if self.slots is not None and self.sums is not None:
            return dict(zip(self.slots, self.sums, strict=True))
        return self.members[0].vector() if self.members else {}

    def dot_centroid(self, vector: dict[str, float]) -> float:
        """``dot(vector, self.centroid())``, summed in the same order (so to the last bit)
        without building the centroid."""
        slots, sums = self.slots, self.sums
        if slots is None or sums is None:
            return dot_doc(vector, self.members[0]) if self.members else dot(vector, {})
        if len(vector) > len(slots):
            return sum(w * vector.get(t, 0.0) for t, w in zip(slots, sums, strict=True))
        get = slots.get
        return sum(w * (sums[i] if (i := get(t)) is not None else 0.0) for t, w in vector.items())

    def term_set(self) -> Container[str]:
        """The terms of its members (the story's own slots when it has them)."""
        slots = self.slots
        if slots is not None:
            return slots if not self.extra_counts else slots.keys() | self.extra_counts.keys()
        if not self.members:
            return _EMPTY
        doc = self.members[0]
        return set(chain(doc.terms, doc.extra))

    def term_counts(self, terms: Iterable[str]) -> dict[str, int]:
        """Members containing each of ``terms`` (0 for none)."""
        slots, counts, extra = self.slots, self.counts, self.extra_counts or {}
        if slots is None or counts is None:
            if not self.members:
                return dict.fromkeys(terms, 0)
            doc = self.members[0]
            present = set(chain(doc.terms, doc.extra))
            return {t: 1 if t in present else 0 for t in terms}
        return {t: counts[i] if (i := slots.get(t)) is not None else extra.get(t, 0) for t in terms}

    def terms(self) -> dict[str, int]:
        """Term -> members containing it (a fresh dict)."""
        if self.slots is not None and self.counts is not None:
            return dict(zip(self.slots, self.counts, strict=True)) | (self.extra_counts or {})
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
        # term -> postings of the docs whose vector has it, oldest first, each one integer:
        # the doc's serial and where the term is in the doc's vector (see _posting), so
        # 8 bytes a posting, the weight being read from the doc when it is scanned
        self._postings: dict[str, array[int]] = {}
        self._keys: dict[bytes, int] = {}  # exact key -> doc serial
        self._expiry: list[tuple[datetime, int, str]] = []  # heap: (last published, serial, id)
        self._high_water: datetime | None = None
        self._evicted_since_sweep = 0

    # -- reading ------------------------------------------------------------------------

    def idf(self, term: str, df: Counter[str] | None = None) -> float:
        counts = self.df if df is None else df
        return math.log((self.n_docs + self.idf_prior) / (counts[term] + 1.0))

    def key_story(self, key: bytes) -> Story | None:
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
        keys: Iterable[bytes],
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
        doc_of, so_far = self.docs.get, partial.get  # bound once: the loop below is hot
        bits, far = _POSITION_BITS, _FAR
        indexed = [term for term in vector if self.df[term] > 0]
        for term in sorted(indexed, key=lambda t: (self.df[t], t))[:query_terms]:
            weight = vector[term]
            postings = self._postings.get(term)
            if postings is None:
                continue
            newest = postings[max(len(postings) - postings_scan, 0) :]
            for posting in reversed(newest):  # newest first
                serial = posting >> bits
                doc = doc_of(serial)
                if doc is not None:
                    at = posting & far
                    if at == far:
                        at = doc.terms.index(term)
                    partial[serial] = so_far(serial, 0.0) + weight * doc.weights[at]
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
        for at, term in enumerate(doc.terms):
            posting = _posting(doc.serial, at)
            postings = self._postings.get(term)
            if postings is None:
                self._postings[term] = array("Q", (posting,))
            else:
                postings.append(posting)
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
        if len(story.members) == 1:  # its centroid and counts are the doc's: nothing kept
            for weight in doc.weights:
                story.centroid_norm2 += weight * weight
        else:
            if len(story.members) == 2:
                first = story.members[0]
                story.slots = {t: _slot(i) for i, t in enumerate(first.terms)}
                story.sums = array("d", first.weights)
                story.counts = array("I", [1]) * len(first.terms)
                story.extra_counts = dict.fromkeys(first.extra, 1) if first.extra else None
            self._add_terms(story, doc)
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

    @staticmethod
    def _add_terms(story: Story, doc: Doc) -> None:
        """Add a member's weights and terms to the story's slots (two members or more)."""
        slots, sums, counts = story.slots, story.sums, story.counts
        assert slots is not None and sums is not None and counts is not None
        extra = story.extra_counts
        for term, weight in zip(doc.terms, doc.weights, strict=True):
            i = slots.get(term)
            if i is None:
                slots[term] = _slot(len(sums))
                sums.append(weight)  # 0.0 + weight
                counts.append(1 + (extra.pop(term, 0) if extra else 0))
                story.centroid_norm2 += weight * weight
            else:
                old = sums[i]
                sums[i] = old + weight
                counts[i] += 1
                story.centroid_norm2 += 2.0 * old * weight + weight * weight
        for term in doc.extra:
            i = slots.get(term)
            if i is not None:
                counts[i] += 1
            else:
                extra = story.extra_counts = story.extra_counts or {}
                extra[term] = extra.get(term, 0) + 1

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
            kept = array("Q", (p for p in postings if p >> _POSITION_BITS in live))
            if kept:
                self._postings[term] = kept
            else:
                del self._postings[term]
        self._evicted_since_sweep = 0


_POSITION_BITS = 16
_FAR = (1 << _POSITION_BITS) - 1  # a term this far into a vector: look its position up


def _posting(serial: int, at: int) -> int:
    """One posting: the doc's serial and the term's position in the doc's vector."""
    return serial << _POSITION_BITS | min(at, _FAR)


# Shared int objects for slot numbers (Python caches only those up to 256): a big story
# has hundreds of terms, and each would otherwise hold an int of its own.
_SLOTS = tuple(range(4096))


def _slot(i: int) -> int:
    return _SLOTS[i] if i < len(_SLOTS) else i


def exact_key(kind: str, value: str) -> bytes:
    """A 16-byte digest standing for ``kind:value`` (a canonical URL, a content hash).

    Every article in memory keeps its keys and the index maps them to it: a URL is
    ~140 bytes as a string, 49 as this digest, and two different values share a
    digest with a chance of 2**-128.
    """
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).digest()


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
