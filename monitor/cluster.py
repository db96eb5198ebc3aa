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
The memory (:class:`~monitor.storyindex.StoryIndex`) keeps the stories of the window
plus a day of slack for late arrivals and evicts older ones as time advances: cost per
article and memory do not grow with the number of articles stored, and replaying the
articles published since :meth:`Clusterer.memory_start` rebuilds the state after a
restart.  Stories are never merged or split.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.model import Article, StoryDecision
from monitor.storyindex import Doc, Nearest, Story, StoryIndex, dot_doc, exact_key, pack
from monitor.storyscore import DEFAULT_THRESHOLDS, Signals, Thresholds, score
from monitor.textfeatures import (
    TextFeatures,
    extract,
    is_year,
    kickers,
    sketch_similarity,
    stem,
    surface_words,
    tokens,
    unpack,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Clusterer",
    "Signals",
    "Thresholds",
    "central_title",
    "score",
]

# Stories stay in memory this long after they stop being joinable by new articles, so
# an article arriving late (published up to this long before the newest one) still
# finds the stories it belongs to.
_LATE_SLACK = timedelta(hours=24)
_EXACT_RANK = 2.0  # added to an "exact" score so it outranks every "similar" one
# Copies share their wording, so their term cosine is high: below this the (costlier)
# shingle comparison is skipped.
_NEAR_DUPLICATE_COSINE = 0.3
_NO_ENTITIES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Query:
    """An article as the clusterer compares it."""

    article: Article
    features: TextFeatures
    vector: dict[str, float]  # unit-length TF-IDF vector with today's frequencies
    entities: frozenset[str]
    keys: tuple[bytes, ...]  # exact keys (canonical URL, content hash): see exact_key
    name_terms: frozenset[str]  # terms that are words of names or tracked entities
    kickers: tuple[str, ...]  # folded title kickers
    rubrics: frozenset[str]  # those its feed has used before


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
        self._index = StoryIndex(window, min(window, _LATE_SLACK), thresholds.idf_prior)

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
        return now - self.window - self._index.slack

    def story_title(self, story_id: str) -> str | None:
        """The story's most central headline (None for a story not in memory)."""
        story = self._index.stories.get(story_id)
        if story is None or not story.members:
            return None
        if len(story.members) == 1:
            return story.members[0].title
        centroid = story.centroid()
        best = max(story.members, key=lambda d: (dot_doc(centroid, d, doc_first=True), -d.serial))
        return best.title

    @property
    def live_stories(self) -> int:
        """Stories held in memory (joinable, or within the slack)."""
        return len(self._index.stories)

    @property
    def live_articles(self) -> int:
        """Articles held in memory."""
        return self._index.n_docs

    # -- decide and record --------------------------------------------------------------

    def _decide(self, query: _Query) -> StoryDecision:
        """Where the article goes (``story_id`` None: a new story). Reads only."""
        t = self.thresholds
        best: tuple[float, Story, str, float] | None = None
        for candidate in self._index.nearest(
            query.vector,
            query.keys,
            query.article.published,
            query_terms=t.query_terms,
            postings_scan=t.postings_scan,
            max_candidates=t.max_candidates,
        ):
            method, value = score(self._signals(query, candidate), t)
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
        """Add the article to story ``story_id`` (created when not in memory)."""
        article, features, vector = query.article, query.features, query.vector
        feed = sys.intern(article.feed_url)
        self._index.advance(article.published)  # evict before looking the story up
        self._index.add(
            Doc(
                serial=self._index.next_serial(),
                story=self._index.story_for(story_id),
                terms=tuple(vector),
                weights=array("d", list(vector.values())),  # from a list: no spare room
                extra=tuple(t for t in features.terms if t not in vector),
                names=tuple(sys.intern(n) for n in features.names),
                packed=pack(article.title, features.sketch),
                kickers=tuple((feed, k) for k in query.kickers),
            ),
            keys=query.keys,
            published=article.published,
            feed=feed,
            numbers=features.numbers,
            entities=query.entities,
        )

    # -- features -----------------------------------------------------------------------

    def _query(self, article: Article, entities: Sequence[str]) -> _Query:
        """The article as the clusterer compares it.

        Features prepared by the parse worker are used as they are unless the title
        has a rubric of its feed.  Made here, they leave out the words as written: only
        the explanation of a join reads them (:meth:`_shared`).
        """
        prepared = article.features
        if prepared is not None and prepared.title_weight != self.thresholds.title_weight:
            prepared = None
        title_kickers = prepared.kickers if prepared is not None else tuple(kickers(article.title))
        feed, used = article.feed_url, self._index.kickers
        rubrics = frozenset(k for k in title_kickers if used[(feed, k)] > 0)
        if prepared is not None and not rubrics:
            features = unpack(prepared)
        else:
            features = extract(
                article.title,
                article.summary,
                article.content,
                self.thresholds.title_weight,
                rubrics,
                surface=False,
                prepared=prepared,
            )
        keys = tuple(
            exact_key(kind, value)
            for kind, value in (("url", article.canonical_url), ("hash", article.content_hash))
            if value
        )
        name_terms = frozenset(
            stem(word) for name in (*features.names.values(), *entities) for word in tokens(name)
        )
        return _Query(
            article,
            features,
            self._weigh(features.terms),
            frozenset(entities) if entities else _NO_ENTITIES,
            keys,
            name_terms,
            title_kickers,
            rubrics,
        )

    def _weigh(self, terms: dict[str, int]) -> dict[str, float]:
        weights = {t: (1.0 + math.log(n)) * self._index.idf(t) for t, n in terms.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items() if w > 0} if norm else {}

    # -- evidence -----------------------------------------------------------------------

    def _signals(self, query: _Query, candidate: Nearest) -> Signals:
        story, features, index = candidate.story, query.features, self._index
        informative = self.thresholds.informative_idf
        entities = [e for e in sorted(query.entities) if e in story.entities]
        entity_words = {stem(w) for e in entities for w in tokens(e)}
        names = [n for n in features.names if n in story.names]
        named = entity_words | {stem(w) for n in names for w in tokens(features.names[n])}
        distinct_names = [  # informative, and not one of the shared entities again
            n
            for n in names
            if index.idf(n, index.name_df) >= informative
            and not entity_words & {stem(w) for w in tokens(features.names[n])}
        ]
        story_terms = story.term_set()
        shared_terms = sum(
            1
            for term in features.terms
            if term in story_terms
            and term not in named
            and term not in features.weak
            and not is_year(term)
            and index.idf(term) >= informative
        )
        centroid = (
            story.dot_centroid(query.vector) / math.sqrt(story.centroid_norm2)
            if story.centroid_norm2 > 0
            else 0.0
        )
        return Signals(
            same_key=any(index.key_story(key) is story for key in query.keys),
            near_duplicate=(
                sketch_similarity(features.sketch, candidate.member.sketch)
                if candidate.cosine >= _NEAR_DUPLICATE_COSINE
                else 0.0
            ),
            member_cosine=candidate.cosine,
            centroid_cosine=centroid,
            keyword=self._keyword(query, story),
            shared_terms=shared_terms,
            shared_names=len(distinct_names),
            shared_entities=len(entities),
            shared_numbers=sum(1 for n in features.numbers if n in story.numbers),
            new_source=query.article.feed_url not in story.feeds,
            hours_apart=story.apart(query.article.published).total_seconds() / 3600.0,
            window_hours=self.window.total_seconds() / 3600.0,
            title_only=not (query.article.summary or query.article.content),
        )

    def _keyword(self, query: _Query, story: Story) -> float:
        """How much of the article is made of this story's keywords (0 to 1).

        A keyword of a story is a term at least ``keyword_support`` of its members
        contain; its strength is the share of the articles in memory containing it
        that are in this story ("ison" in the story holding nearly every article about
        the comet: close to 1).  Summed over the article's terms, each times its
        weight in the article's unit vector.  Words of names and tracked entities are
        left out: the one story so far about a person is not where every later article
        naming them belongs.
        """
        support = self.thresholds.keyword_support
        if len(story.members) < support:
            return 0.0  # no term is in more members than the story has
        story_terms = story.term_counts(query.vector)
        total = 0.0
        for term, weight in query.vector.items():
            inside = story_terms[term]
            if inside >= support and term not in query.name_terms:
                total += weight * inside / (self._index.df[term] + 1.0)
        return min(total, 1.0)

    def _shared(self, query: _Query, story: Story, limit: int = 8) -> tuple[str, ...]:
        """What the article shares with the story: entities, names, then terms by weight."""
        features = query.features
        shared = [e for e in sorted(query.entities) if e in story.entities]
        seen = {e.casefold() for e in shared}
        shared += [
            features.names[n]
            for n in sorted(features.names)
            if n in story.names and features.names[n].casefold() not in seen
        ]
        covered = {stem(w) for item in shared for w in tokens(item)}
        centroid = story.centroid()
        weighted = sorted(
            (-query.vector[t] * centroid[t], t) for t in query.vector if t in centroid
        )
        written = features.surface
        for _, term in weighted:
            if term not in covered:
                if not written:
                    a = query.article
                    written = surface_words(a.title, a.summary, a.content, query.rubrics)
                shared.append(written.get(term, term))
                covered.add(term)
        return tuple(shared[:limit])


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
