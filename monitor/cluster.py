"""Online story clustering: which story a new article joins, and why.

Pure stage with in-memory state and no I/O.  The ingest planner uses it like this::

    clusterer = Clusterer(window=settings.story_window)
    clusterer.replay(stored_since(clusterer.memory_start(now)))   # warm start
    for article in tick_articles:              # sorted (published, feed url, entry index)
        decision = clusterer.place(article, entity_names, lambda: new_id("s"))
        # decision.story_id is always set; decision.method is "new" for a new story
        title = clusterer.story_title(decision.story_id)

:meth:`Clusterer.place` decides and records in one step, so the next article of the
same tick sees this one.  If the tick then fails to be stored, rebuild the clusterer
with :meth:`Clusterer.replay` from what storage holds: the index must not know
stories the database does not.

How a decision is made
----------------------
1. Candidates: the stories of articles sharing an exact key (canonical URL, content
   hash) and of the articles found through an inverted index on the article's rarest
   terms (newest postings first, capped), restricted to stories whose nearest
   ``published`` is within ``window`` of the article's.
2. Evidence per candidate story (:class:`~monitor.storyscore.Signals`): exact key,
   shingle similarity and TF-IDF cosine with its closest member, cosine with its
   centroid (which caps drift: a story cannot wander far from what it is about), a
   story keyword, shared informative terms, name-like phrases, tracked entities and
   numbers, whether the feed is a new source for it, and the time apart.
3. :func:`~monitor.storyscore.score` turns the evidence into a method and a score with
   the thresholds of one table (:class:`~monitor.storyscore.Thresholds`); the best
   story that qualifies wins ("exact" before "similar"), ties going to the older story.

Document frequencies are learned incrementally from the articles in memory, so a word
seen in few articles (a name, a place) weighs more than one seen in many ("says").
Stories whose latest article is older than the window plus one window of slack (for
late arrivals) are evicted as time advances, and their articles leave the frequencies
and the index: cost per article and memory do not grow with the number of articles
stored, and replaying the articles published since :meth:`Clusterer.memory_start`
rebuilds the state after a restart.  Stories are never merged or split.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitor.model import Article, StoryDecision
from monitor.storyscore import DEFAULT_THRESHOLDS, Signals, Thresholds, score
from monitor.textfeatures import (
    TextFeatures,
    extract,
    is_year,
    kickers,
    sketch_similarity,
    stem,
    tokens,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Clusterer",
    "Signals",
    "Thresholds",
    "central_title",
    "score",
]

_EXACT_RANK = 2.0  # added to an "exact" score so it outranks every "similar" one


@dataclass(eq=False)
class _Doc:
    serial: int
    story: _Story
    feed_url: str
    title: str
    published: datetime
    vector: dict[str, float]  # unit-length TF-IDF vector (idf as when it was added)
    features: TextFeatures
    entities: frozenset[str]
    keys: tuple[str, ...]  # exact keys: "url:...", "hash:..."
    kickers: tuple[tuple[str, str], ...]  # (feed url, title kicker)


@dataclass(eq=False)
class _Story:
    id: str
    serial: int
    members: list[_Doc] = field(default_factory=list)
    centroid: dict[str, float] = field(default_factory=dict)  # sum of member vectors
    centroid_norm2: float = 0.0
    first_published: datetime | None = None
    last_published: datetime | None = None
    terms: Counter[str] = field(default_factory=Counter)  # term -> members containing it
    names: Counter[str] = field(default_factory=Counter)
    entities: Counter[str] = field(default_factory=Counter)
    numbers: Counter[str] = field(default_factory=Counter)
    feeds: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Query:
    article: Article
    features: TextFeatures
    vector: dict[str, float]
    entities: frozenset[str]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _Candidate:
    story: _Story
    member: _Doc  # the story's closest retrieved member
    cosine: float  # with that member


class Clusterer:
    """Online, incremental story clustering that explains every decision.

    ``place`` decides and records, ``replay`` rebuilds after a restart, ``story_title``
    names a story.  Deterministic: the same articles in the same order give the same
    decisions.  Not thread-safe: one writer clusters a tick's articles in order.
    """

    def __init__(
        self,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        window: timedelta = timedelta(hours=72),
    ) -> None:
        self.thresholds = thresholds
        self.window = window
        self._slack = window  # late arrivals still find the stories they belong to
        self._n_docs = 0
        self._serial = 0
        self._df: Counter[str] = Counter()  # term -> articles in memory containing it
        self._name_df: Counter[str] = Counter()  # name-like phrase -> articles
        self._kickers: Counter[tuple[str, str]] = Counter()  # (feed, title kicker) -> articles
        self._stories: dict[str, _Story] = {}
        self._docs: dict[int, _Doc] = {}
        self._postings: dict[str, deque[int]] = {}  # term -> doc serials, oldest first
        self._keys: dict[str, int] = {}  # exact key -> doc serial
        self._expiry: list[tuple[datetime, int, str]] = []  # heap: (last published, serial, id)
        self._high_water: datetime | None = None
        self._evicted_since_sweep = 0

    # -- public API ---------------------------------------------------------------------

    def place(
        self,
        article: Article,
        entities: Sequence[str],
        new_story_id: Callable[[], str],
    ) -> StoryDecision:
        """Decide which story ``article`` joins, record it there and say why.

        ``entities`` are the names of the tracked entities the article mentions.  The
        decision always carries a story id: an existing story's (method "exact" or
        "similar", with its score and what they share) or, with method "new", a fresh
        one from ``new_story_id``.
        """
        query = self._query(article, entities)
        decision = self._decide(query)
        if decision.story_id is None:
            decision = replace(decision, story_id=new_story_id())
        assert decision.story_id is not None
        self._record(query, decision.story_id)
        return decision

    def replay(self, stored: Iterable[tuple[Article, str, Sequence[str]]]) -> None:
        """Warm start: record stored (article, story id, entities) in their original order.

        Feed it the articles published since :meth:`memory_start`; older ones would be
        evicted again at once.
        """
        for article, story_id, entities in stored:
            self._record(self._query(article, entities), story_id)

    def memory_start(self, now: datetime) -> datetime:
        """The earliest ``published`` the clusterer still keeps at ``now``."""
        return now - self.window - self._slack

    def story_title(self, story_id: str) -> str | None:
        """The story's most central headline (None for a story not in memory)."""
        story = self._stories.get(story_id)
        if story is None or not story.members:
            return None
        best = max(story.members, key=lambda d: (_dot(d.vector, story.centroid), -d.serial))
        return best.title

    @property
    def live_stories(self) -> int:
        """Stories held in memory (joinable, or within the slack)."""
        return len(self._stories)

    @property
    def live_articles(self) -> int:
        """Articles held in memory."""
        return len(self._docs)

    # -- decide and record --------------------------------------------------------------

    def _decide(self, query: _Query) -> StoryDecision:
        """Where the article goes (``story_id`` None: a new story). Reads only."""
        best: tuple[float, _Story, str, float] | None = None
        for candidate in self._candidates(query):
            method, value = score(self._signals(query, candidate), self.thresholds)
            if method == "new":
                continue
            rank = value + (_EXACT_RANK if method == "exact" else 0.0)
            if best is None or rank > best[0]:  # candidates come oldest story first
                best = (rank, candidate.story, method, value)
        if best is None:
            return StoryDecision(story_id=None, method="new", score=0.0)
        _rank, story, method, value = best
        return StoryDecision(story.id, method, value, self._shared(query, story))

    def _record(self, query: _Query, story_id: str) -> None:
        """Add the article to story ``story_id`` (created when unknown) and to the index."""
        article = query.article
        self._advance(article.published)
        story = self._stories.get(story_id)
        if story is None:
            self._serial += 1
            story = _Story(id=story_id, serial=self._serial)
            self._stories[story_id] = story
        self._serial += 1
        doc = _Doc(
            serial=self._serial,
            story=story,
            feed_url=article.feed_url,
            title=article.title,
            published=article.published,
            vector=query.vector,
            features=query.features,
            entities=query.entities,
            keys=query.keys,
            kickers=tuple((article.feed_url, k) for k in kickers(article.title)),
        )
        self._docs[doc.serial] = doc
        self._attach(story, doc)
        for key in doc.keys:
            self._keys[key] = doc.serial
        for term in doc.vector:
            self._postings.setdefault(term, deque()).append(doc.serial)
        self._n_docs += 1
        self._df.update(doc.features.terms.keys())
        self._name_df.update(doc.features.names.keys())
        self._kickers.update(doc.kickers)

    # -- features -----------------------------------------------------------------------

    def _query(self, article: Article, entities: Sequence[str]) -> _Query:
        feed = article.feed_url
        rubrics = {k for k in kickers(article.title) if self._kickers[(feed, k)] > 0}
        features = extract(
            article.title, article.summary, article.content, self.thresholds.title_weight, rubrics
        )
        keys = tuple(
            key
            for key in (
                f"url:{article.canonical_url}" if article.canonical_url else "",
                f"hash:{article.content_hash}" if article.content_hash else "",
            )
            if key
        )
        return _Query(article, features, self._weigh(features.terms), frozenset(entities), keys)

    def _idf(self, term: str, df: Counter[str] | None = None) -> float:
        counts = self._df if df is None else df
        return math.log((self._n_docs + self.thresholds.idf_prior) / (counts[term] + 1.0))

    def _weigh(self, terms: dict[str, int]) -> dict[str, float]:
        weights = {t: (1.0 + math.log(n)) * self._idf(t) for t, n in terms.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items() if w > 0} if norm else {}

    # -- candidates and evidence --------------------------------------------------------

    def _candidates(self, query: _Query) -> list[_Candidate]:
        """Joinable stories with their closest retrieved member, oldest story first."""
        t = self.thresholds
        partial: dict[int, float] = {}
        for key in query.keys:
            serial = self._keys.get(key)
            if serial is not None:
                partial[serial] = partial.get(serial, 0.0) + 10.0  # always scored
        rare = sorted(query.vector, key=lambda term: (-self._idf(term), term))[: t.query_terms]
        for term in rare:
            postings = self._postings.get(term, ())
            weight = query.vector[term]
            for i, serial in enumerate(reversed(postings)):
                if i >= t.postings_scan:
                    break
                doc = self._docs.get(serial)
                if doc is not None:
                    partial[serial] = partial.get(serial, 0.0) + weight * doc.vector[term]
        top = sorted(partial.items(), key=lambda item: (-item[1], item[0]))[: t.max_candidates]
        best: dict[str, _Candidate] = {}
        for serial, _ in top:
            doc = self._docs[serial]
            if not self._joinable(doc.story, query.article.published):
                continue
            cosine = _dot(query.vector, doc.vector)
            seen = best.get(doc.story.id)
            if seen is None or cosine > seen.cosine:
                best[doc.story.id] = _Candidate(doc.story, doc, cosine)
        return sorted(best.values(), key=lambda c: c.story.serial)

    def _joinable(self, story: _Story, published: datetime) -> bool:
        """Whether the story's nearest ``published`` is within the window of ``published``.

        Members are never more than a window apart, so the nearest one is within the
        window exactly when ``published`` is within a window of the story's span.
        """
        if story.first_published is None or story.last_published is None:
            return False
        return story.first_published - self.window <= published <= (
            story.last_published + self.window
        )

    def _signals(self, query: _Query, candidate: _Candidate) -> Signals:
        story, features = candidate.story, query.features
        informative = self.thresholds.informative_idf
        names = [
            n
            for n in features.names
            if n in story.names and self._idf(n, self._name_df) >= informative
        ]
        named = {stem(w) for n in names for w in tokens(features.names[n])}
        shared_terms = sum(
            1
            for term in features.terms
            if term in story.terms
            and term not in named
            and not is_year(term)
            and self._idf(term) >= informative
        )
        centroid = (
            _dot(query.vector, story.centroid) / math.sqrt(story.centroid_norm2)
            if story.centroid_norm2 > 0
            else 0.0
        )
        return Signals(
            same_key=any(self._key_story(key) is story for key in query.keys),
            near_duplicate=sketch_similarity(features.sketch, candidate.member.features.sketch),
            member_cosine=candidate.cosine,
            centroid_cosine=centroid,
            keyword=self._keyword(query, story),
            shared_terms=shared_terms,
            shared_names=len(names),
            shared_entities=sum(1 for e in query.entities if e in story.entities),
            shared_numbers=sum(1 for n in features.numbers if n in story.numbers),
            new_source=query.article.feed_url not in story.feeds,
            hours_apart=self._apart(story, query.article.published).total_seconds() / 3600.0,
            window_hours=self.window.total_seconds() / 3600.0,
        )

    def _key_story(self, key: str) -> _Story | None:
        serial = self._keys.get(key)
        doc = self._docs.get(serial) if serial is not None else None
        return doc.story if doc is not None else None

    def _keyword(self, query: _Query, story: _Story) -> float:
        """How strongly one of the article's terms points at this story.

        For a term that at least ``keyword_support`` members of the story contain: the
        share of the articles in memory containing it that are in this story.  "ison"
        in a story holding nearly every article about the comet scores close to 1.
        """
        support = self.thresholds.keyword_support
        best = 0.0
        for term in query.features.terms:
            inside = story.terms.get(term, 0)
            if inside >= support:
                best = max(best, inside / (self._df[term] + 1.0))
        return best

    @staticmethod
    def _apart(story: _Story, published: datetime) -> timedelta:
        assert story.first_published is not None and story.last_published is not None
        if published < story.first_published:
            return story.first_published - published
        if published > story.last_published:
            return published - story.last_published
        return timedelta(0)

    def _shared(self, query: _Query, story: _Story, limit: int = 8) -> tuple[str, ...]:
        """What the article shares with the story: entities, names, then terms by weight."""
        features = query.features
        shared = [e for e in sorted(query.entities) if e in story.entities]
        shared += [features.names[n] for n in sorted(features.names) if n in story.names]
        covered = {w for item in shared for w in tokens(item)}
        weighted = sorted(
            (-query.vector[t] * story.centroid[t], t) for t in query.vector if t in story.centroid
        )
        for _, term in weighted:
            word = features.surface.get(term, term)
            if word not in covered:
                shared.append(word)
                covered.add(word)
        return tuple(shared[:limit])

    # -- bookkeeping --------------------------------------------------------------------

    def _attach(self, story: _Story, doc: _Doc) -> None:
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

    def _advance(self, published: datetime) -> None:
        """Move the high-water mark and evict stories nothing can join any more."""
        if self._high_water is not None and published <= self._high_water:
            return
        self._high_water = published
        horizon = published - self.window - self._slack
        while self._expiry and self._expiry[0][0] < horizon:
            last, _serial, story_id = heapq.heappop(self._expiry)
            story = self._stories.get(story_id)
            if story is not None and story.last_published == last:  # else superseded
                self._evict(story)
        if self._evicted_since_sweep > max(len(self._docs), 1000):
            self._sweep()

    def _evict(self, story: _Story) -> None:
        del self._stories[story.id]
        for doc in story.members:
            del self._docs[doc.serial]
            for key in doc.keys:
                if self._keys.get(key) == doc.serial:
                    del self._keys[key]
            self._df.subtract(doc.features.terms.keys())
            self._name_df.subtract(doc.features.names.keys())
            self._kickers.subtract(doc.kickers)
            self._n_docs -= 1
        self._evicted_since_sweep += len(story.members)

    def _sweep(self) -> None:
        """Drop postings of evicted articles, and counts that fell to zero."""
        self._df = +self._df  # unary plus keeps the positive counts only
        self._name_df = +self._name_df
        self._kickers = +self._kickers
        live = self._docs
        for term in list(self._postings):
            kept = deque(serial for serial in self._postings[term] if serial in live)
            if kept:
                self._postings[term] = kept
            else:
                del self._postings[term]
        self._evicted_since_sweep = 0


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def central_title(titles: Sequence[str]) -> str:
    """The most central of ``titles``: the one sharing most words with the others.

    For callers without the clusterer's state (a story read back from storage). Ties
    go to the earliest title.
    """
    if not titles:
        return ""
    bags = [{stem(w) for w in tokens(title)} for title in titles]
    counts: Counter[str] = Counter(w for bag in bags for w in bag)

    def centrality(index: int) -> tuple[float, int]:
        bag = bags[index]
        if not bag:
            return (0.0, -index)
        return (sum(counts[w] - 1 for w in bag) / math.sqrt(len(bag)), -index)

    return titles[max(range(len(titles)), key=centrality)]
