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
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

__all__ = [
    "Doc",
    "Nearest",
    "Story",
    "StoryIndex",
    "Tally",
    "dot",
    "dot_doc",
    "exact_key",
    "pack",
]

_EMPTY: frozenset[str] = frozenset()


@dataclass(eq=False, slots=True)
class Doc:
    """One article in memory: only what is read after it was recorded.

    Tens of thousands of these live for days, so the vector is a tuple of (interned)
    terms and an array of weights rather than a dict of float objects, and the shingle
    sketch and title, rarely read, are packed in one bytes object (see :func:`pack`):
    an array and a str of their own would take ~80 bytes more.
    """

    serial: int
    story: Story
    terms: tuple[str, ...]  # terms of its unit-length TF-IDF vector (idf as when added)
    weights: array[float]  # their weights, in the same order
    extra: tuple[str, ...]  # its other terms (weight 0: left out of the vector), usually ()
    names: tuple[str, ...]  # folded name-like phrases
    packed: bytes  # shingle sketch and title
    kickers: tuple[tuple[str, str], ...]  # (feed url, title kicker)

    @property
    def sketch(self) -> array[int]:
        """The shingle sketch."""
        packed = self.packed
        return array("I", packed[2 : 2 + _SKETCH_ITEM * int.from_bytes(packed[:2], "little")])

    @property
    def title(self) -> str:
        """The title, as the article had it."""
        packed = self.packed
        return packed[2 + _SKETCH_ITEM * int.from_bytes(packed[:2], "little") :].decode()

    def vector(self) -> dict[str, float]:
        """The TF-IDF vector as a dict, in the order it was built."""
        return dict(zip(self.terms, self.weights, strict=True))


_SKETCH_ITEM = array("I").itemsize


def pack(title: str, sketch: array[int]) -> bytes:
    """A doc's title and shingle sketch in one bytes object: the sketch's length (2
    bytes), the sketch, the title in UTF-8."""
    return len(sketch).to_bytes(2, "little") + sketch.tobytes() + title.encode()


@dataclass(eq=False, slots=True)
class Tally:
    """What the members of a story of two or more have in common, term by term.

    Each term of the member vectors has a slot (in the order the terms first came):
    the sum of the members' weights of the term and the members containing it are kept
    in arrays at that slot, 9 bytes a term.  The term -> slot dict (~40 bytes a term
    more) is only kept while the story is in use (see :meth:`StoryIndex.warm`): else
    it is built again from the members' terms, in C, when needed.
    """

    sums: array[float]  # slot -> sum of the members' weights of the term
    counts: array[int]  # slot -> members containing the term ("B" until 255 members)
    extra: dict[str, int] | None  # terms in no member vector -> members containing them
    slots: dict[str, int] | None  # term -> slot, while the story is in use

    @classmethod
    def of(cls, first: Doc) -> Tally:
        """The tally of a story's first member (to add the second one to)."""
        return cls(
            array("d", first.weights),
            array("B", [1]) * len(first.terms),
            dict.fromkeys(first.extra, 1) if first.extra else None,
            _slot_map(first.terms),
        )

    def slot_map(self, members: Iterable[Doc]) -> dict[str, int]:
        """Term -> slot: the kept dict, or one built for the call."""
        slots = self.slots
        if slots is None:
            return _slot_map(dict.fromkeys(chain.from_iterable(d.terms for d in members)))
        return slots

    def add(self, doc: Doc, norm2: float, members: int) -> float:
        """Add a member to a story of ``members``, its slot dict kept; returns ``norm2``
        (the squared norm of the sums) updated for it."""
        slots, sums, extra = self.slots, self.sums, self.extra
        assert slots is not None
        if members >= 255 and self.counts.typecode == "B":
            self.counts = array("I", self.counts)
        counts = self.counts
        for term, weight in zip(doc.terms, doc.weights, strict=True):
            i = slots.get(term)
            if i is None:
                slots[term] = _slot(len(sums))
                sums.append(weight)  # 0.0 + weight
                counts.append(1 + (extra.pop(term, 0) if extra else 0))
                norm2 += weight * weight
            else:
                old = sums[i]
                sums[i] = old + weight
                counts[i] += 1
                norm2 += 2.0 * old * weight + weight * weight
        for term in doc.extra:
            i = slots.get(term)
            if i is not None:
                counts[i] += 1
            else:
                extra = self.extra = self.extra or {}
                extra[term] = extra.get(term, 0) + 1
        return norm2


@dataclass(eq=False, slots=True)
class Story:
    """One story in memory, with what its members have in common.

    Most stories have one article: their centroid and term counts are that article's,
    so they are only built (and kept) once a second member arrives: the
    :class:`Tally`.
    """

    id: str
    serial: int  # creation order, for deterministic ties
    members: list[Doc] = field(default_factory=list)
    centroid_norm2: float = 0.0
    first_published: datetime | None = None
    last_published: datetime | None = None
    # name-like phrases of its members: those of its first article (the doc's own
    # tuple, shared) until another brings more, then a frozenset
    names: Collection[str] = _EMPTY
    entities: frozenset[str] = _EMPTY  # tracked entities its members mention
    numbers: frozenset[str] = _EMPTY
    # feeds of its members (few: a tuple is smaller than a set; one tuple for all the
    # stories of one feed)
    feeds: tuple[str, ...] = ()
    tally: Tally | None = None  # from two members on
    expiry: datetime | None = None  # its key in the index's expiry heap

    def __lt__(self, other: Story) -> bool:
        """Expiry heap order: (expiry, serial), like the (time, serial) tuples it saves."""
        assert self.expiry is not None and other.expiry is not None
        if self.expiry != other.expiry:
            return self.expiry < other.expiry
        return self.serial < other.serial

    def centroid(self) -> dict[str, float]:
        """Sum of the member vectors, as a fresh dict (in the order terms first came)."""
        tally = self.tally
        if tally is not None:
            return dict(zip(tally.slot_map(self.members), tally.sums, strict=True))
        return self.members[0].vector() if self.members else {}

    def dot_centroid(self, vector: dict[str, float]) -> float:
        """``dot(vector, self.centroid())``, summed in the same order (so to the last bit)
        without building the centroid."""
        tally = self.tally
        if tally is None:
            return dot_doc(vector, self.members[0]) if self.members else dot(vector, {})
        slots, sums = tally.slot_map(self.members), tally.sums
        if len(vector) > len(sums):
            return sum(w * vector.get(t, 0.0) for t, w in zip(slots, sums, strict=True))
        get = slots.get
        return sum(w * (sums[i] if (i := get(t)) is not None else 0.0) for t, w in vector.items())

    def term_set(self) -> Container[str]:
        """The terms of its members (the tally's slots when it has one)."""
        tally = self.tally
        if tally is not None:
            slots, extra = tally.slot_map(self.members), tally.extra
            return slots if not extra else slots.keys() | extra.keys()
        if not self.members:
            return _EMPTY
        doc = self.members[0]
        return set(chain(doc.terms, doc.extra))

    def term_counts(self, terms: Iterable[str]) -> dict[str, int]:
        """Members containing each of ``terms`` (0 for none)."""
        tally = self.tally
        if tally is None:
            if not self.members:
                return dict.fromkeys(terms, 0)
            doc = self.members[0]
            present = set(chain(doc.terms, doc.extra))
            return {t: 1 if t in present else 0 for t in terms}
        slots, counts, extra = tally.slot_map(self.members), tally.counts, tally.extra or {}
        return {t: counts[i] if (i := slots.get(t)) is not None else extra.get(t, 0) for t in terms}

    def terms(self) -> dict[str, int]:
        """Term -> members containing it (a fresh dict)."""
        tally = self.tally
        if tally is not None:
            slots = tally.slot_map(self.members)
            return dict(zip(slots, tally.counts, strict=True)) | (tally.extra or {})
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
        self._serial = 0
        # the docs by serial less _base (None: evicted, or a story's serial): a list
        # takes 8 bytes a serial, a dict ~50 a doc
        self._docs: list[Doc | None] = []
        self._base = 0  # serial of the oldest doc in memory at the last sweep
        # term -> postings of the docs whose vector has it, oldest first, each one integer:
        # the doc's serial less _base and where the term is in the doc's vector, so 4
        # bytes a posting, the weight being read from the doc when it is scanned
        self._postings: dict[str, array[int]] = {}
        # exact key (see _key) -> serial of the newest doc with it, or of an evicted one
        # (a doc does not keep its keys: they are dropped a while after it): the keys added
        # lately in a dict, folded now and then into two sorted arrays, 16 bytes a key
        # (the dict takes ~90: a hundred thousand keys in a few days' window)
        self._keys: dict[int, int] = {}
        self._key_hashes: array[int] = array("Q")
        self._key_serials: array[int] = array("Q")
        self._evicted_since_keys = 0
        # heap of the stories, by when they were last published as of their push (a
        # story published since is pushed again when it comes up): one entry a story
        self._expiry: list[Story] = []
        self._warm: dict[Story, None] = {}  # stories whose tally is kept, least recent first
        self._feeds: dict[str, tuple[str]] = {}  # feed -> (feed,): shared by its stories
        self._high_water: datetime | None = None
        self._evicted_since_sweep = 0

    # -- reading ------------------------------------------------------------------------

    @property
    def docs(self) -> dict[int, Doc]:
        """The articles in memory by serial (a fresh dict)."""
        return {doc.serial: doc for doc in self._docs if doc is not None}

    def doc(self, serial: int) -> Doc | None:
        """The article ``serial`` if it is in memory."""
        at = serial - self._base
        return self._docs[at] if 0 <= at < len(self._docs) else None

    def idf(self, term: str, df: Counter[str] | None = None) -> float:
        counts = self.df if df is None else df
        return math.log((self.n_docs + self.idf_prior) / (counts[term] + 1.0))

    def key_story(self, key: bytes) -> Story | None:
        serial = self._key_serial(_key(key))
        doc = self.doc(serial) if serial is not None else None
        return doc.story if doc is not None else None

    def _key_serial(self, key: int) -> int | None:
        """The serial the exact key maps to, if any (its doc may be evicted)."""
        serial = self._keys.get(key)
        if serial is None:  # not lately: in the arrays?
            hashes = self._key_hashes
            at = bisect_left(hashes, key)
            if at < len(hashes) and hashes[at] == key:
                serial = self._key_serials[at]
        return serial

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
            serial = self._key_serial(_key(key))
            if serial is not None and self.doc(serial) is not None:
                partial[serial] = partial.get(serial, 0.0) + 10.0  # always scored
        docs, so_far = self._docs, partial.get  # bound once: the loop below is hot
        bits, far = _POSITION_BITS, _FAR
        indexed = [term for term in vector if self.df[term] > 0]
        for term in sorted(indexed, key=lambda t: (self.df[t], t))[:query_terms]:
            weight = vector[term]
            postings = self._postings.get(term)
            if postings is None:
                continue
            newest = postings[max(len(postings) - postings_scan, 0) :]
            for posting in reversed(newest):  # newest first
                doc = docs[posting >> bits]
                if doc is not None:
                    at = posting & far
                    if at == far:
                        at = doc.terms.index(term)
                    serial = doc.serial
                    partial[serial] = so_far(serial, 0.0) + weight * doc.weights[at]
        top = _best(partial, max_candidates)
        best: dict[str, Nearest] = {}
        for serial, _ in top:
            doc = docs[serial - self._base]
            assert doc is not None
            if not self.joinable(doc.story, published):
                continue
            self.warm(doc.story)  # it is about to be compared with the query
            cosine = dot_doc(vector, doc)
            seen = best.get(doc.story.id)
            if seen is None or cosine > seen.cosine:
                best[doc.story.id] = Nearest(doc.story, doc, cosine)
        return sorted(best.values(), key=lambda n: n.story.serial)

    def warm(self, story: Story) -> None:
        """Keep the story's term -> slot dict while it is among the recently used stories.

        A story being joined or compared with is usually used again soon (by the next
        articles about it), most others never again.
        """
        tally = story.tally
        if tally is None:
            return
        if tally.slots is not None:
            del self._warm[story]  # to the end again
        else:
            tally.slots = tally.slot_map(story.members)
        self._remember(story)

    def _remember(self, story: Story) -> None:
        """Add the story (its slot dict kept) as the most recently used one."""
        warm = self._warm
        if len(warm) >= _WARM_STORIES:
            coldest = next(iter(warm))
            del warm[coldest]
            assert coldest.tally is not None
            coldest.tally.slots = None
        warm[story] = None

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
        keys: Iterable[bytes],
        published: datetime,
        feed: str,
        numbers: Collection[str],
        entities: Collection[str],
    ) -> None:
        """Record ``doc`` (built with :meth:`story_for` and :meth:`next_serial`).

        What only its story needs (when it was published, its feed, numbers, entities)
        and its exact keys are passed along instead of being kept in the doc.
        """
        self.advance(published)
        docs, slot = self._docs, doc.serial - self._base
        if slot > len(docs):  # story serials came in between
            docs.extend([None] * (slot - len(docs)))
        docs.append(doc)
        self._attach(doc.story, doc, published, feed, numbers, entities)
        for key in keys:
            self._keys[_key(key)] = doc.serial
        if len(self._keys) > max(_RECENT_KEYS, len(self._key_hashes) >> 2):
            self._merge_keys()
        for at, term in enumerate(doc.terms):
            posting = (doc.serial - self._base) << _POSITION_BITS | min(at, _FAR)
            postings = self._postings.get(term)
            if postings is None:
                self._postings[term] = _postings([posting])
            else:
                try:
                    postings.append(posting)
                except OverflowError:  # a serial far from the base: 8 bytes a posting
                    self._postings[term] = postings = array("Q", postings)
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
        expiry = self._expiry
        while expiry and (story := expiry[0]).expiry is not None and story.expiry < horizon:
            if story.last_published == story.expiry:
                heapq.heappop(expiry)
                self._evict(story)
            else:  # published since it was pushed: its place is further down
                story.expiry = story.last_published
                heapq.heapreplace(expiry, story)
        if self._evicted_since_sweep > max(self.n_docs, 1000):
            self._sweep()
        if self._evicted_since_keys > max(self.n_docs // 8, 100):
            self._merge_keys()

    def _attach(
        self,
        story: Story,
        doc: Doc,
        published: datetime,
        feed: str,
        numbers: Collection[str],
        entities: Collection[str],
    ) -> None:
        if not story.members:  # its centroid and counts are the doc's: nothing kept
            for weight in doc.weights:
                story.centroid_norm2 += weight * weight
        else:
            tally = story.tally
            if tally is None:
                tally = story.tally = Tally.of(story.members[0])
                self._remember(story)
            else:
                self.warm(story)
            story.centroid_norm2 = tally.add(doc, story.centroid_norm2, len(story.members))
        story.members.append(doc)
        if doc.names:
            names = story.names
            if not names:
                story.names = doc.names
            elif any(name not in names for name in doc.names):
                story.names = frozenset(names).union(doc.names)
        if entities:
            story.entities = story.entities | frozenset(entities)
        if numbers:
            story.numbers = story.numbers | frozenset(numbers)
        if not story.feeds:
            story.feeds = self._feeds.setdefault(feed, (feed,))
        elif feed not in story.feeds:
            story.feeds = (*story.feeds, feed)
        if story.first_published is None or published < story.first_published:
            story.first_published = published
        if story.last_published is None or published > story.last_published:
            story.last_published = published
            if story.expiry is None:
                story.expiry = published
                heapq.heappush(self._expiry, story)

    def _evict(self, story: Story) -> None:
        del self.stories[story.id]
        if story.tally is not None and story.tally.slots is not None:
            del self._warm[story]
        for doc in story.members:
            self._docs[doc.serial - self._base] = None
            self.df.subtract(doc.terms)
            self.df.subtract(doc.extra)
            self.name_df.subtract(doc.names)
            self.kickers.subtract(doc.kickers)
            self.n_docs -= 1
        self._evicted_since_sweep += len(story.members)
        self._evicted_since_keys += len(story.members)
        # a story and its docs refer to each other: without this they would wait, with
        # their arrays and texts, for the next full collection (seconds to minutes of a
        # daemon's memory); now reference counting frees them at once
        story.members.clear()

    def _sweep(self) -> None:
        """Drop postings of evicted articles, and counts that fell to zero."""
        self.df = +self.df  # unary plus keeps the positive counts only
        self.name_df = +self.name_df
        self.kickers = +self.kickers
        docs = self._docs
        oldest = next((at for at, doc in enumerate(docs) if doc is not None), len(docs))
        shift = oldest << _POSITION_BITS  # the oldest doc in memory is the new base
        for term, postings in list(self._postings.items()):
            kept = [p - shift for p in postings if docs[p >> _POSITION_BITS] is not None]
            if kept:
                self._postings[term] = _postings(kept)
            else:
                del self._postings[term]
        del docs[:oldest]
        self._base += oldest
        self._evicted_since_sweep = 0
        self._merge_keys()

    def _merge_keys(self) -> None:
        """Fold the recent exact keys into the sorted arrays, dropping the keys of evicted
        articles (until then, lookups skip them).

        One pass over both, in key order, a recent key replacing an older one: the
        arrays are rebuilt without the transient dict or tuples a sort of all the keys
        would make.
        """
        docs, base = self._docs, self._base
        end = base + len(docs)
        hashes, serials = self._key_hashes, self._key_serials
        kept_hashes, kept_serials = array("Q"), array("Q")
        add_hash, add_serial = kept_hashes.append, kept_serials.append
        at, n = 0, len(hashes)
        for key, serial in chain(sorted(self._keys.items()), [(_NO_KEY, -1)]):
            while at < n and (old := hashes[at]) <= key:
                if old != key and base <= (s := serials[at]) < end and docs[s - base] is not None:
                    add_hash(old)
                    add_serial(s)
                at += 1
            if base <= serial < end and docs[serial - base] is not None:
                add_hash(key)
                add_serial(serial)
        self._key_hashes, self._key_serials = kept_hashes, kept_serials
        self._keys = {}
        self._evicted_since_keys = 0


_POSITION_BITS = 8
_FAR = (1 << _POSITION_BITS) - 1  # a term this far into a vector: look its position up


def _postings(values: list[int]) -> array[int]:
    """Postings in 4 bytes each, or 8 if one needs it (the serials in memory span more
    than 2**24 since the last sweep: not with the articles of a few days)."""
    try:
        return array("I", values)
    except OverflowError:
        return array("Q", values)


def _best(partial: dict[int, float], n: int) -> list[tuple[int, float]]:
    """The ``n`` best (serial, score) by score, then serial: ``heapq.nsmallest(n, items,
    key=lambda i: (-i[1], i[0]))`` with the scores ranked in C first, the key function
    running only on those that can make it (not on each of hundreds)."""
    if n <= 0:
        return []
    items: Iterable[tuple[int, float]] = partial.items()
    if len(partial) > n:
        cut = sorted(partial.values(), reverse=True)[n - 1]
        items = [i for i in items if i[1] >= cut]
    return sorted(items, key=lambda i: (-i[1], i[0]))[:n]


def _key(key: bytes) -> int:
    """An exact key as the index keeps it: its first 64 bits (a lookup among 100,000
    keys meets another key's bits with a chance of 1 in 2**47)."""
    return int.from_bytes(key[:8])


_NO_KEY = 1 << 64  # past every key: ends a merge
# recent keys kept in the dict at least, before a merge (else a quarter of the arrays')
_RECENT_KEYS = 4096


# Shared int objects for slot numbers (Python caches only those up to 256): a big story
# has hundreds of terms, and each would otherwise hold an int of its own.
_SLOTS = tuple(range(4096))


def _slot(i: int) -> int:
    return _SLOTS[i] if i < len(_SLOTS) else i


def _slot_map(terms: Collection[str]) -> dict[str, int]:
    """Term -> slot for a story's slot terms."""
    n = len(terms)
    slots = _SLOTS if n <= len(_SLOTS) else chain(_SLOTS, range(len(_SLOTS), n))
    return dict(zip(terms, slots, strict=False))  # as many as there are terms


# Stories whose term -> slot dict is kept (see StoryIndex.warm): a tick's articles are
# compared with a few hundred stories at most.
_WARM_STORIES = 256


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
