"""Story clustering: the scoring table, text features, and the online clusterer."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bench.cluster_quality import ari, bcubed, nmi, pairwise
from monitor.cluster import Clusterer, central_title
from monitor.model import Article, StoryDecision
from monitor.storyscore import DEFAULT_THRESHOLDS, Signals, score
from monitor.textfeatures import extract, kickers, name_phrases, stem, tokens

T0 = datetime(2026, 6, 24, 6, 0, tzinfo=UTC)


def article(
    title: str,
    summary: str = "",
    *,
    feed: str = "https://a.example/rss",
    at: timedelta = timedelta(0),
    url: str | None = None,
    content_hash: str | None = None,
    index: int = 0,
) -> Article:
    url = url or f"{feed}/{hashlib.sha1(title.encode()).hexdigest()[:10]}"
    return Article(
        feed_url=feed,
        entry_index=index,
        guid=url,
        url=url,
        canonical_url=url,
        title=title,
        summary=summary,
        content=summary,
        content_hash=content_hash or hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest(),
        published=T0 + at,
        fetched=T0 + at,
    )


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"s{next(counter)}"


# Unrelated news of the same days, so document frequencies mean something.
BACKGROUND = [
    ("Storm brings floods to northern Italy", "Rivers burst their banks in Piedmont."),
    ("Central bank holds interest rates", "The bank said inflation is slowing."),
    ("Tech giant unveils new smartphone", "The phone has a larger battery and camera."),
    ("Wildfire forces evacuations in Canada", "Thousands left homes in British Columbia."),
    ("Football club sacks manager after defeat", "The board met after a fifth loss."),
    ("Parliament debates pension reform", "Opposition parties criticised the plan."),
    ("Scientists find water on distant moon", "The probe detected ice under the surface."),
    ("Oil prices rise on supply fears", "Brent crude climbed three percent."),
    ("Moscow hosts international book fair", "Publishers from forty countries attend."),
    ("Russian economy grows despite sanctions", "Official data showed growth in May."),
    ("Election campaign enters final week", "Candidates toured the country."),
    ("Airline cancels flights over strike", "Pilots walked out over pay."),
    ("Museum returns looted bronzes to Nigeria", "The artefacts were taken in 1897."),
    ("Heatwave grips southern Spain", "Temperatures passed 44 degrees in Seville."),
    ("Carmaker recalls electric vehicles", "A software fault can disable the brakes."),
    ("Tennis champion withdraws with injury", "She hurt her wrist in training."),
    ("City council approves new tram line", "Construction starts next spring."),
    ("Hospital waiting lists reach record", "Health officials blamed staff shortages."),
    ("Film festival opens with war drama", "The director thanked the jury."),
    ("Farmers protest over fuel costs", "Tractors blocked roads near Lyon."),
    ("Chip maker plans new factory", "The plant will employ two thousand people."),
    ("Earthquake shakes coastal Peru", "No damage was reported after the tremor."),
    ("Moscow court jails blogger", "The blogger was accused of spreading false news."),
    ("Russian ministry reports harvest figures", "Wheat exports are expected to rise."),
]

MUTINY = [
    article(
        "Prigozhin halts Wagner march on Moscow after Lukashenko deal",
        "Yevgeny Prigozhin said his Wagner fighters would turn back from their advance "
        "on Moscow after talks brokered by Belarusian President Alexander Lukashenko.",
        feed="https://wire.example/rss",
        at=timedelta(hours=1),
    ),
    article(
        "Wagner fighters turn back under Belarus deal, Prigozhin to leave Russia",
        "The Kremlin said Yevgeny Prigozhin will move to Belarus and charges against him "
        "will be dropped after his Wagner mercenaries abandoned their march on Moscow.",
        feed="https://paper.example/feed",
        at=timedelta(hours=2),
    ),
    article(
        "Lukashenko brokers deal as Wagner mutiny ends short of Moscow",
        "Belarusian leader Alexander Lukashenko negotiated with Yevgeny Prigozhin, whose "
        "Wagner fighters stopped their march 200 km from Moscow.",
        feed="https://tv.example/news.xml",
        at=timedelta(hours=3),
    ),
]
CRASH = article(
    "Prigozhin reported on board plane that crashed north of Moscow",
    "A private jet crashed in the Tver region killing all ten people on board, and the "
    "aviation agency said Yevgeny Prigozhin was on the passenger list.",
    feed="https://paper.example/feed",
    at=timedelta(hours=30),
)


def background(at: timedelta = timedelta(0)) -> list[Article]:
    return [
        article(title, summary, feed=f"https://bg{i % 3}.example/rss", at=at, index=i)
        for i, (title, summary) in enumerate(BACKGROUND)
    ]


def run(articles: list[Article], clusterer: Clusterer | None = None) -> list[StoryDecision]:
    clusterer = clusterer or Clusterer()
    new_id = ids()
    return [clusterer.place(a, (), new_id) for a in articles]


# --- the scoring function ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "method", "low", "high"),
    [
        (Signals(same_key=True), "exact", 1.0, 1.0),
        (Signals(near_duplicate=0.93, member_cosine=0.2), "exact", 0.93, 0.93),
        (Signals(near_duplicate=0.5, member_cosine=0.1, shared_terms=1), "new", 0.0, 0.3),
        # wording differs, names and places shared: similar
        (
            Signals(member_cosine=0.45, centroid_cosine=0.4, shared_terms=4, new_source=True),
            "similar",
            0.45,
            0.5,
        ),
        # one rare word in common is never enough, however similar
        (Signals(member_cosine=0.6, centroid_cosine=0.6, shared_terms=1), "new", 0.5, 0.7),
        # ... but a shared tracked entity is one more piece of evidence
        (
            Signals(member_cosine=0.6, centroid_cosine=0.6, shared_terms=1, shared_entities=1),
            "similar",
            0.6,
            0.7,
        ),
        # shared entities alone do not make a story: they say who, not what happened
        (Signals(member_cosine=0.1, centroid_cosine=0.1, shared_entities=2), "new", 0.0, 0.3),
        (Signals(member_cosine=0.3, centroid_cosine=0.3, shared_entities=3), "new", 0.3, 0.5),
        # drift cap: a close member of a story that drifted far does not count
        (Signals(member_cosine=0.6, centroid_cosine=0.05, shared_terms=3), "new", 0.0, 0.05),
        # story keywords help only once the closest member is somewhat similar
        (
            Signals(member_cosine=0.2, centroid_cosine=0.15, keyword=0.4, shared_terms=1),
            "similar",
            0.5,
            0.6,
        ),
        (
            Signals(member_cosine=0.1, centroid_cosine=0.1, keyword=0.4, shared_terms=1),
            "new",
            0,
            0.2,
        ),
        # ... and while the story has not drifted away from the article (centroid)
        (
            Signals(member_cosine=0.3, centroid_cosine=0.04, keyword=0.5, shared_terms=2),
            "new",
            0,
            0.05,
        ),
        # a weak keyword share is no second piece of evidence
        (
            Signals(member_cosine=0.45, centroid_cosine=0.45, keyword=0.3, shared_terms=1),
            "new",
            0.7,
            0.8,
        ),
        # a bare title may join on one piece of evidence, but only with a high score
        (
            Signals(
                member_cosine=0.45,
                centroid_cosine=0.45,
                keyword=0.3,
                shared_terms=1,
                title_only=True,
            ),
            "similar",
            0.7,
            0.8,
        ),
        (
            Signals(member_cosine=0.5, centroid_cosine=0.5, shared_terms=1, title_only=True),
            "new",
            0.5,
            0.55,
        ),
        (Signals(member_cosine=0.9, centroid_cosine=0.9, title_only=True), "new", 0.9, 0.9),
        # time: the same evidence a window apart scores less
        (
            Signals(member_cosine=0.3, centroid_cosine=0.3, shared_terms=3, hours_apart=72.0),
            "new",
            0.26,
            0.28,
        ),
        (
            Signals(member_cosine=0.3, centroid_cosine=0.3, shared_terms=3, hours_apart=0.0),
            "similar",
            0.3,
            0.31,
        ),
    ],
)
def test_score_table(signals: Signals, method: str, low: float, high: float) -> None:
    got_method, got_score = score(signals, DEFAULT_THRESHOLDS)
    assert got_method == method
    assert low <= got_score <= high


def test_score_bonuses_are_capped() -> None:
    two = score(Signals(member_cosine=0.2, centroid_cosine=0.2, shared_terms=2, shared_names=2))
    five = score(Signals(member_cosine=0.2, centroid_cosine=0.2, shared_terms=2, shared_names=5))
    assert two == five


# --- text features -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        ("angriffe", "angriff"),
        ("angriffen", "angriff"),
        ("angriffs", "angriff"),
        ("attacks", "attack"),
        ("attacked", "attack"),
        ("attacking", "attack"),
        ("maduros", "maduro"),
        ("iran", "iran"),
        ("irans", "iran"),
        ("companies", "company"),
        ("400000", "400000"),
        ("bus", "bus"),
    ],
)
def test_stem(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_tokens_fold_drop_stop_words_and_read_numbers() -> None:
    assert tokens("Die Angriffe auf Kyjiw: sieben Tote, 400.000 Dollar") == [
        "angriffe",
        "kyjiw",
        "7",
        "tote",
        "400000",
        "dollar",
    ]
    assert tokens("Seven dead as $400,000 is paid to the U.S.") == [
        "7",
        "dead",
        "$",
        "400000",
        "paid",
    ][:2] + ["400000", "paid"]


def test_kickers_and_rubrics() -> None:
    assert kickers("heise-Angebot: iX-Workshop: Active Directory hacken") == [
        "heise angebot",
        "ix workshop",
    ]
    assert kickers("Prigozhin halts march") == []
    plain = extract("Marktbericht: DAX schließt höher", "", "")
    rubric = extract("Marktbericht: DAX schließt höher", "", "", rubrics={"marktbericht"})
    assert plain.terms["marktbericht"] == 2
    assert rubric.terms["marktbericht"] == 1  # a feed's rubric weighs as a summary word


def test_name_phrases() -> None:
    names = name_phrases(
        "The King meets Donald Trump’s envoy; Julia Klöckner and the BfV warn about TSMC-Pläne"
    )
    assert set(names) == {"donald trump", "julia klockner", "bfv", "tsmc"}
    assert names["julia klockner"] == "Julia Klöckner"


def test_years_are_not_numbers_that_tie_stories() -> None:
    features = extract("Hannover Messe 2026 closes with 3 fewer halls", "", "")
    assert features.numbers == frozenset({"3"})


# --- the clusterer -------------------------------------------------------------------------


def test_differently_worded_reports_of_one_event_join_one_story() -> None:
    decisions = run([*background(), *MUTINY])
    first, second, third = decisions[-3:]
    assert first.method == "new"
    assert second.story_id == third.story_id == first.story_id
    assert second.method == third.method == "similar"
    assert "Yevgeny Prigozhin" in second.shared
    assert all(d.method == "new" for d in decisions[:-3])  # background stays apart


def test_a_different_event_about_the_same_person_stays_apart() -> None:
    decisions = run([*background(), *MUTINY, CRASH])
    assert decisions[-1].method == "new"
    assert decisions[-1].story_id != decisions[-2].story_id


def test_bare_titles_of_one_event_join_and_another_event_stays_apart() -> None:
    def bare(a: Article) -> Article:
        return replace(a, summary="", content="")

    more = [
        article("Prigozhin mutiny: what we know", at=timedelta(hours=4)),
        article(
            "Prigozhin to move to Belarus, Kremlin says",
            feed="https://x.example/rss",
            at=timedelta(hours=5),
        ),
    ]
    stream = [bare(a) for a in [*background(), *MUTINY, *more, CRASH]]
    decisions = run(stream)
    mutiny, crash = decisions[-6:-1], decisions[-1]
    assert len({d.story_id for d in mutiny}) == 1
    assert crash.method == "new"


def test_tracked_entities_are_shared_but_do_not_make_a_story_alone() -> None:
    clusterer = Clusterer()
    new_id = ids()
    for a in background():
        clusterer.place(a, (), new_id)
    person = ["Yevgeny Prigozhin"]
    first = clusterer.place(MUTINY[0], person, new_id)
    second = clusterer.place(MUTINY[1], person, new_id)
    crash = clusterer.place(CRASH, person, new_id)
    assert second.story_id == first.story_id
    assert second.shared[0] == "Yevgeny Prigozhin"
    assert crash.method == "new"


def test_exact_duplicate_content_under_another_url_joins_as_exact() -> None:
    wire = MUTINY[0]
    copy = article(
        wire.title,
        wire.summary,
        feed="https://copy.example/rss",
        url="https://copy.example/2026/wagner",
        content_hash=wire.content_hash,
        at=timedelta(hours=5),
    )
    decisions = run([*background(), wire, copy])
    assert decisions[-1].story_id == decisions[-2].story_id
    assert (decisions[-1].method, decisions[-1].score) == ("exact", 1.0)


WIRE_TEXT = (
    "Yevgeny Prigozhin said on Saturday that his Wagner fighters would turn back from "
    "their advance on Moscow to avoid bloodshed, after talks brokered by Belarusian "
    "President Alexander Lukashenko. The Kremlin said criminal charges against him would "
    "be dropped and that he would move to Belarus. Fighters who took part in the mutiny "
    "will not be prosecuted, a spokesman said, and those who stayed loyal may sign "
    "contracts with the defence ministry. Residents of Rostov cheered as the columns left."
)


def test_near_duplicate_wire_copy_joins_as_exact() -> None:
    wire = article(MUTINY[0].title, WIRE_TEXT, feed="https://wire.example/rss")
    copy = article(
        "UPDATE 2-" + MUTINY[0].title,
        WIRE_TEXT.replace("on Saturday", "late on Saturday") + " Reporting by Moscow bureau.",
        feed="https://copy.example/rss",
        at=timedelta(hours=1),
    )
    decisions = run([*background(), wire, copy])
    assert decisions[-1].story_id == decisions[-2].story_id
    assert decisions[-1].method == "exact"
    assert 0.7 <= decisions[-1].score < 1.0


def test_same_canonical_url_joins_as_exact() -> None:
    wire = MUTINY[0]
    again = article("Different headline entirely", "Other words.", url=wire.canonical_url)
    decisions = run([wire, again])
    assert decisions[1].story_id == decisions[0].story_id
    assert decisions[1].method == "exact"


def test_window_nearest_published_decides() -> None:
    wire = MUTINY[0]

    def copy(hours: float) -> Article:
        return article(
            wire.title,
            wire.summary + " Updated.",
            feed="https://late.example/rss",
            at=wire.published - T0 + timedelta(hours=hours),
        )

    inside = run([*background(), wire, copy(71)])
    assert inside[-1].story_id == inside[-2].story_id
    outside = run([*background(), wire, copy(73)])
    assert outside[-1].method == "new"
    # a shorter window from the settings
    short = run([*background(), wire, copy(5)], Clusterer(window=timedelta(hours=4)))
    assert short[-1].method == "new"


def test_expired_stories_are_evicted() -> None:
    clusterer = Clusterer(window=timedelta(hours=72))
    new_id = ids()
    words = [f"{a}{b}" for a in ("ka", "lo", "mi", "ter", "van", "dor") for b in ("x", "y", "z")]
    for day in range(12):
        for i in range(6):  # six unrelated articles a day, each with words of its own
            unique = " ".join(f"{w}{day}q{i}" for w in words[i::6])
            at = timedelta(days=day, hours=i)
            clusterer.place(article(f"Report {unique}", unique, at=at), (), new_id)
    # the last day's articles, the window (72h) and one day of slack are kept
    assert clusterer.live_articles <= 6 * 5
    assert clusterer.live_stories == clusterer.live_articles
    assert clusterer.story_title("s1") is None  # long gone
    assert clusterer.memory_start(T0 + timedelta(days=11)) == T0 + timedelta(days=7)


def test_results_are_deterministic() -> None:
    stream = [*background(), *MUTINY, CRASH, *background(at=timedelta(hours=40))]
    assert run(stream) == run(stream)


def test_replay_rebuilds_the_same_state() -> None:
    history = [*background(), MUTINY[0], MUTINY[1]]
    rest = [MUTINY[2], CRASH]
    uninterrupted = Clusterer()
    new_id = ids()
    decided = [uninterrupted.place(a, (), new_id) for a in history]
    expected = [uninterrupted.place(a, (), new_id) for a in rest]

    restarted = Clusterer()
    assert all(d.story_id is not None for d in decided)
    restarted.replay((a, d.story_id or "", ()) for a, d in zip(history, decided, strict=True))
    resumed = [restarted.place(a, (), new_id) for a in rest]
    assert [(d.method, d.score, d.shared) for d in resumed] == [
        (d.method, d.score, d.shared) for d in expected
    ]
    assert resumed[0].story_id == expected[0].story_id


def test_story_title_is_the_most_central_headline() -> None:
    clusterer = Clusterer()
    decisions = run([*background(), *MUTINY], clusterer)
    story = decisions[-1].story_id
    assert story is not None
    assert clusterer.story_title(story) in {a.title for a in MUTINY}
    assert clusterer.story_title(story) == MUTINY[0].title


def test_central_title_without_state() -> None:
    titles = [
        "Wagner mutiny ends",
        "Prigozhin halts Wagner march on Moscow",
        "Wagner march on Moscow halted, Prigozhin to Belarus",
        "Photos of the day",
    ]
    assert central_title(titles) == "Prigozhin halts Wagner march on Moscow"
    assert central_title([]) == ""


def test_a_feeds_rubric_does_not_tie_its_articles_together() -> None:
    feed = "https://tech.example/atom"
    reviews = [
        article(f"Top 10: {title}", summary, feed=feed, at=timedelta(hours=i), index=i)
        for i, (title, summary) in enumerate(
            [
                ("Die besten Tablets im Test", "Wir zeigen günstige Tablets mit Stift."),
                ("Der beste Schreibtisch", "Höhenverstellbare Tische im Vergleich."),
                ("Die besten Balkonkraftwerke", "Speicher für die Solaranlage im Test."),
            ]
        )
    ]
    decisions = run([*background(), *reviews])
    assert len({d.story_id for d in decisions[-3:]}) == 3


# --- the bench's metrics --------------------------------------------------------------------


def test_metrics_on_a_known_clustering() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["x", "x", "y", "z", "z", "z"]
    p, r, f = pairwise(truth, predicted)
    assert (p, r) == pytest.approx((2 / 4, 2 / 4))
    assert f == pytest.approx(0.5)
    bp, br, _ = bcubed(truth, predicted)
    assert bp == pytest.approx((1 + 1 + 1 + 2 / 3 + 2 / 3 + 1 / 3) / 6)
    assert br == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6)
    assert nmi(truth, truth) == pytest.approx(1.0)
    assert ari(truth, truth) == pytest.approx(1.0)
    assert ari(truth, ["q"] * 6) == pytest.approx(0.0)
    assert 0.0 < nmi(truth, predicted) < 1.0
