"""The story decision in one table and one function: thresholds, signals, score.

Pure.  :class:`Thresholds` holds every weight and threshold of clustering (the daemon
and the bench use :data:`DEFAULT_THRESHOLDS`, no per-set profiles); :class:`Signals` is
the evidence the clusterer gathered about one (article, candidate story) pair;
:func:`score` turns the one into a method and a score using the other.

The defaults were tuned with ``bench/cluster_quality.py`` on the labelled sets in
``shared/data/clustering/``, favouring precision: a wrong merge silently swallows an
alert, a missed merge only costs a second one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_THRESHOLDS", "Signals", "Thresholds", "score"]


@dataclass(frozen=True)
class Thresholds:
    """Every weight and threshold of the clustering decision."""

    # -- when an article joins a story
    join: float = 0.30  # combined score needed to join a story ("similar")
    near_duplicate: float = 0.70  # shingle similarity that counts as the same text ("exact")
    min_evidence: int = 2  # informative shared terms, names, keywords (entities: one) needed
    informative_idf: float = 2.5  # a shared term or name counts as evidence from this idf on
    # -- how the signals combine
    member_weight: float = 0.8  # closest member's cosine; the rest goes to the centroid's
    centroid_floor: float = 0.10  # drift cap: under this centroid cosine members count nothing
    keyword_weight: float = 1.0  # times the story-keyword share of the article
    keyword_support: int = 2  # members of a story that must contain a term for a keyword
    keyword_floor: float = 0.18  # keywords count only from this closest-member cosine on
    keyword_centroid_floor: float = 0.05  # ... and this centroid cosine on (drift cap)
    keyword_evidence: float = 0.4  # a keyword share this high is one more piece of evidence
    title_only_single: float = 0.6  # a title-only article joins on one piece of evidence
    #                                 from this combined score on
    title_only_join: float = 0.20  # ... and on min_evidence pieces from this one on (a
    #                               headline sharing two of its ~8 words: cosine ~2/8)
    entity_bonus: float = 0.05  # per shared tracked entity (two at most)
    name_bonus: float = 0.06  # per shared informative name-like phrase (two at most)
    number_bonus: float = 0.04  # per shared number other than a year (two at most)
    source_bonus: float = 0.04  # the story has no article from this feed yet
    time_decay: float = 0.10  # share of the score lost when the nearest member is a window away
    # -- features
    title_weight: int = 2  # a title word counts as much as this many summary words
    idf_prior: float = 20.0  # pseudo-articles, so the first articles do not all look rare
    # -- candidate retrieval (bounds the cost per article)
    query_terms: int = 10  # rarest of the article's terms other articles have, looked up
    postings_scan: int = 100  # newest postings scanned per term
    max_candidates: int = 24  # articles scored in full


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Signals:
    """Evidence that an article belongs to one candidate story."""

    same_key: bool = False  # canonical URL or content hash equal to a member's
    near_duplicate: float = 0.0  # shingle similarity with the closest member
    member_cosine: float = 0.0  # TF-IDF cosine with the closest member
    centroid_cosine: float = 0.0  # TF-IDF cosine with the story's centroid
    keyword: float = 0.0  # how much of the article is this story's keywords (0..1; see
    #                       Clusterer._keyword)
    shared_terms: int = 0  # informative terms in common (not words of shared names, entities)
    shared_names: int = 0  # informative name-like phrases in common (not shared entities)
    shared_entities: int = 0  # tracked entities in common
    shared_numbers: int = 0  # numbers in common, years left out
    new_source: bool = False  # no article of the story came from the article's feed
    hours_apart: float = 0.0  # from the story's nearest member
    window_hours: float = 72.0
    title_only: bool = False  # the article has a title and nothing else (no summary, content)


def score(signals: Signals, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[str, float]:
    """The one scoring function: ``(method, score)`` with method "exact", "similar" or "new".

    * "exact", 1.0: a shared canonical URL or content hash;
    * "exact", the shingle similarity: a near-duplicate text (wire copy);
    * "similar", the combined score: it reaches ``join`` with enough evidence;
    * "new", the combined score: not enough (the score is kept for explanations).

    The combined score is text similarity (closest member and centroid, the member
    counting only while the centroid is close enough) plus bonuses for story keywords
    (only once the closest member is somewhat similar), shared names, entities and
    numbers and a new source, times a decay with the time to the story's nearest
    article.  "similar" also needs ``min_evidence`` distinct pieces of evidence, so
    one shared word, however rare, never makes a story on its own; except for an
    article that is nothing but a title (a handful of words, so two informative words
    in common are rare even within one story), which may join on one piece of evidence
    when its combined score reaches ``title_only_single``, well above ``join``.  The
    same shortness caps its cosine: two headlines sharing two informative words of
    about eight score near 0.25, below the ``join`` set for articles with a summary,
    so a bare title with ``min_evidence`` pieces joins from ``title_only_join`` on,
    provided the story has not drifted from it (``centroid_floor``).
    """
    t = thresholds
    if signals.same_key:
        return "exact", 1.0
    if signals.near_duplicate >= t.near_duplicate:
        return "exact", round(signals.near_duplicate, 4)
    member = signals.member_cosine if signals.centroid_cosine >= t.centroid_floor else 0.0
    text = t.member_weight * member + (1.0 - t.member_weight) * signals.centroid_cosine
    keyword = (
        signals.keyword
        if signals.member_cosine >= t.keyword_floor
        and signals.centroid_cosine >= t.keyword_centroid_floor
        else 0.0
    )
    bonus = (
        t.keyword_weight * keyword
        + t.name_bonus * min(signals.shared_names, 2)
        + t.entity_bonus * min(signals.shared_entities, 2)
        + t.number_bonus * min(signals.shared_numbers, 2)
        + (t.source_bonus if signals.new_source else 0.0)
    )
    age = min(signals.hours_apart / signals.window_hours, 1.0) if signals.window_hours > 0 else 0.0
    combined = round((text + bonus) * (1.0 - t.time_decay * age), 4)
    evidence = (
        signals.shared_terms
        + signals.shared_names
        + min(signals.shared_entities, 1)  # tracked people and groups: who, not what
        + (1 if keyword >= t.keyword_evidence else 0)
    )
    if combined >= t.join and evidence >= t.min_evidence:
        return "similar", combined
    if signals.title_only and evidence >= 1:
        enough = evidence >= t.min_evidence and signals.centroid_cosine >= t.centroid_floor
        needed = t.title_only_join if enough else max(t.join, t.title_only_single)
        if combined >= needed:
            return "similar", combined
    return "new", combined
