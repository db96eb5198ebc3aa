"""The clusterer's compact memory and prepared features change no decision."""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from array import array
from collections import Counter
from datetime import timedelta

import pytest

from monitor import storyindex
from monitor.cluster import Clusterer
from monitor.model import Article, StoryDecision
from monitor.storyindex import Doc, Story, dot, dot_doc, exact_key, pack
from monitor.storyscore import Thresholds
from monitor.textfeatures import prepare
from tests.test_cluster import CRASH, MUTINY, article, background, ids


def prepared(a: Article, title_weight: int = 2) -> Article:
    features = prepare(a.title, a.summary, a.content, title_weight)
    return dataclasses.replace(a, features=features)


def decisions(articles: list[Article], clusterer: Clusterer) -> list[StoryDecision]:
    new_id = ids()
    return [clusterer.place(a, (), new_id) for a in articles]


def news() -> list[Article]:
    """Background, one event in three reports, another about the same person, and a feed
    whose titles repeat a kicker (a rubric from its second article on)."""
    rubric = [
        article(
            f"Marktbericht: {title}",
            summary,
            feed="https://boerse.example/rss",
            at=timedelta(minutes=10 * i),
        )
        for i, (title, summary) in enumerate(
            [
                ("DAX schließt höher", "Der Leitindex gewann 1,5 Prozent auf 18.400 Punkte."),
                ("DAX schließt tiefer", "Der Leitindex verlor 0,8 Prozent auf 18.250 Punkte."),
                ("Ölpreis steigt", "Brent kostete 84 Dollar je Barrel."),
            ]
        )
    ]
    return [*background(), *rubric, *MUTINY, CRASH]


def test_prepared_features_give_the_same_decisions_as_features_made_here() -> None:
    plain = decisions(news(), Clusterer())
    assert decisions([prepared(a) for a in news()], Clusterer()) == plain
    # prepared with another title weight than the clusterer's: made again, same result
    assert decisions([prepared(a, 3) for a in news()], Clusterer()) == plain
    assert prepared(news()[0]) == news()[0]  # not part of an article's identity


def test_a_warm_start_without_prepared_features_continues_identically() -> None:
    items = news()
    head, tail = items[:-4], [prepared(a) for a in items[-4:]]
    first = Clusterer()
    new_id = ids()
    placed = [first.place(prepared(a), (), new_id) for a in head]
    expected = [first.place(a, (), new_id) for a in tail]
    warm = Clusterer()  # storage gives back articles without prepared features
    warm.replay((a, d.story_id or "", ()) for a, d in zip(head, placed, strict=True))
    counter = iter(range(1, 100))
    got = [warm.place(a, (), lambda: f"n{next(counter)}") for a in tail]
    known = {d.story_id for d in placed}
    for want, have in zip(expected, got, strict=True):
        assert (have.method, have.score, have.shared) == (want.method, want.score, want.shared)
        if want.story_id in known:
            assert have.story_id == want.story_id
        else:
            assert have.story_id is not None and have.story_id.startswith("n")


def test_a_story_of_one_article_keeps_no_centroid_of_its_own() -> None:
    clusterer = Clusterer()
    placed = decisions([*background(), *MUTINY], clusterer)
    index = clusterer._index
    single = index.stories[placed[0].story_id or ""]
    assert len(single.members) == 1 and single.tally is None
    assert single.centroid() == single.members[0].vector()
    joined = index.stories[placed[-1].story_id or ""]
    assert len(joined.members) == 3 and joined.tally is not None
    total: dict[str, float] = {}
    for member in joined.members:
        for term, weight in member.vector().items():
            total[term] = total.get(term, 0.0) + weight
    assert joined.centroid() == total
    assert joined.centroid_norm2 > 0
    assert abs(joined.centroid_norm2 - sum(w * w for w in total.values())) < 1e-9
    assert not hasattr(single.members[0], "__dict__")  # slots: no per-object dict
    assert not hasattr(single, "__dict__")


def test_postings_follow_the_articles_through_eviction_and_sweeps() -> None:
    clusterer = Clusterer(window=timedelta(hours=2))
    rng = random.Random(5)
    words = [f"word{i}" for i in range(60)]
    items = [
        article(
            " ".join(rng.sample(words, 6)),
            " ".join(rng.sample(words, 12)),
            at=timedelta(minutes=7 * i),
            feed=f"https://f{i % 5}.example/rss",
        )
        for i in range(1500)
    ]
    decisions(items, clusterer)
    index = clusterer._index
    assert 0 < len(index.docs) < 200  # most were evicted, and swept along the way
    assert index._base > 0  # rebased at the sweeps
    bits, far = storyindex._POSITION_BITS, storyindex._FAR
    live_postings = 0
    for term, postings in index._postings.items():
        assert postings.itemsize == 4  # one integer: the weight is read from the doc
        assert list(postings) == sorted(postings)  # oldest first
        for posting in postings:
            doc = index.docs.get((posting >> bits) + index._base)
            if doc is not None:
                live_postings += 1
                assert doc.terms[posting & far] == term
    assert live_postings == sum(len(d.terms) for d in index.docs.values())
    serials = [*index._keys.values(), *index._key_serials]
    stale = [serial for serial in serials if serial not in index.docs]
    assert len(stale) <= 2 * 100  # evicted articles' keys go a while after them
    assert sum(index.df.values()) == sum(len(d.terms) + len(d.extra) for d in index.docs.values())


def test_dot_with_a_doc_sums_exactly_as_with_dicts() -> None:
    rng = random.Random(3)
    story = Story(id="s", serial=1)
    for _ in range(200):
        terms = rng.sample([f"t{i}" for i in range(40)], rng.randint(1, 20))
        weights = [rng.random() for _ in terms]
        doc = Doc(1, story, tuple(terms), array("d", weights), (), (), pack("", array("I")), ())
        other = {f"t{i}": rng.random() for i in rng.sample(range(40), rng.randint(1, 20))}
        assert dot_doc(other, doc) == dot(other, doc.vector())
        assert dot_doc(other, doc, doc_first=True) == dot(doc.vector(), other)
    assert math.isclose(dot({"a": 1.0}, {"a": 2.0}), 2.0)


def test_thresholds_with_another_title_weight_still_work() -> None:
    clusterer = Clusterer(Thresholds(title_weight=3))
    made_here = decisions(news(), clusterer)
    assert decisions([prepared(a) for a in news()], Clusterer(Thresholds(title_weight=3))) == (
        made_here
    )


def test_postings_past_the_position_field_look_the_term_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = decisions(news(), Clusterer())
    monkeypatch.setattr(storyindex, "_FAR", 3)  # every term from the 4th on: looked up
    assert decisions(news(), Clusterer()) == expected


def test_story_slots_agree_with_their_members_also_with_extra_terms() -> None:
    # with a small prior, a term in most articles weighs nothing: it is an "extra" term
    clusterer = Clusterer(Thresholds(idf_prior=0.5, join=0.05, min_evidence=0))
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    items = [
        article(" ".join(["common", *rng.sample(words, 3)]), "", at=timedelta(minutes=i))
        for i in range(40)
    ]
    decisions(items, clusterer)
    index = clusterer._index
    stories = [s for s in index.stories.values() if len(s.members) > 1]
    assert stories and any(d.extra for d in index.docs.values())
    probe = {w: rng.random() for w in ["common", *words[:5]]}
    for story in stories:
        total: dict[str, float] = {}
        for member in story.members:
            for term, weight in member.vector().items():
                total[term] = total.get(term, 0.0) + weight
        assert story.centroid() == total and list(story.centroid()) == list(total)
        members = Counter(t for d in story.members for t in (*d.terms, *d.extra))
        assert story.terms() == members
        assert story.term_counts([*words, "common", "none"]) == {
            t: members[t] for t in [*words, "common", "none"]
        }
        for vector in (probe, story.members[0].vector(), {"alpha": 1.0}):
            assert story.dot_centroid(vector) == dot(vector, story.centroid())


def test_exact_keys_are_short_and_keep_url_and_hash_apart() -> None:
    url, digest = exact_key("url", "x"), exact_key("hash", "x")
    assert len(url) == len(digest) == 16 and url != digest
    assert exact_key("url", "x") == url


def test_the_best_candidates_are_those_of_nsmallest_also_with_ties() -> None:
    rng = random.Random(11)
    for _ in range(300):
        partial = {
            rng.randrange(10_000): rng.choice([0.5, 1.0, 10.0, rng.random()])
            for _ in range(rng.randint(0, 60))
        }
        for n in (0, 1, 5, 24, 100):
            want = heapq.nsmallest(n, partial.items(), key=lambda i: (-i[1], i[0]))
            assert storyindex._best(partial, n) == want


def test_stories_added_up_again_from_their_members_decide_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = decisions(news(), Clusterer())
    monkeypatch.setattr(storyindex, "_WARM_STORIES", 1)  # slot dicts built again and again
    clusterer = Clusterer()
    assert decisions(news(), clusterer) == expected
    assert (
        sum(
            s.tally is not None and s.tally.slots is not None
            for s in clusterer._index.stories.values()
        )
        <= 1
    )


def test_a_story_of_hundreds_of_members_counts_past_one_byte() -> None:
    first = Doc(
        serial=1,
        story=Story(id="s", serial=0),
        terms=("strike", "port"),
        weights=array("d", [0.8, 0.6]),
        extra=("says",),
        names=(),
        packed=pack("Port strike", array("I")),
        kickers=(),
    )
    tally = storyindex.Tally.of(first)
    norm2 = 1.0
    for members in range(1, 300):
        norm2 = tally.add(first, norm2, members)
    assert list(tally.counts) == [300, 300]  # counts held in a byte until 255 members
    assert tally.extra == {"says": 300}
    assert tally.sums[0] == sum([0.8] * 300)


def test_an_evicted_story_lets_go_of_its_articles() -> None:
    """A story and its docs refer to each other: the story's side is cut at eviction,
    so reference counting frees them at once instead of the next full collection."""
    clusterer = Clusterer(window=timedelta(hours=2))
    new_id = ids()
    text = ("Port strike halts shipping", "Dockers walk out at the three largest ports")
    clusterer.place(article(*text), (), new_id)
    copy = article(*text, feed="https://other.example/rss", at=timedelta(minutes=5))
    clusterer.place(copy, (), new_id)
    (story,) = clusterer._index.stories.values()
    assert len(story.members) == 2
    clusterer.place(article("Budget passes", "Parliament votes", at=timedelta(days=2)), (), new_id)
    assert story.id not in clusterer._index.stories
    assert story.members == []


def test_exact_keys_find_the_newest_article_through_merges_and_evictions() -> None:
    """The recent keys' dict is folded into sorted arrays (16 bytes a key) now and then;
    a lookup answers as one dict of every key would: the newest article's story."""
    clusterer = Clusterer(window=timedelta(hours=6))
    index = clusterer._index
    rng = random.Random(11)
    words = [f"word{i}" for i in range(80)]
    newest: dict[str, str] = {}  # canonical URL -> story of the newest article with it
    new_id = ids()
    start = article("x", "y").published
    merged, recent = 0, 0
    for i in range(5000):
        url = f"https://site.example/{rng.randrange(1500)}"  # reused: keys replaced
        a = dataclasses.replace(
            article(" ".join(rng.sample(words, 6)), " ".join(rng.sample(words, 10))),
            canonical_url=url,
            published=start + timedelta(minutes=2 * i),
        )
        decision = clusterer.place(a, (), new_id)
        assert decision.story_id is not None
        newest[url] = decision.story_id
        merged += len(index._keys) < recent
        recent = len(index._keys)
    assert merged > 10 and len(index._key_hashes) > 0
    assert list(index._key_hashes) == sorted(set(index._key_hashes))
    live = {doc.serial for doc in index.docs.values()}
    stale = set(index._key_serials) - live  # evicted since the last merge
    assert len(stale) <= 2 * max(len(live) // 8, 100)
    for url, story in newest.items():
        found = index.key_story(exact_key("url", url))
        if story in index.stories:  # all its articles are in memory, the newest one too
            assert found is not None and found.id == story
        else:
            assert found is None
