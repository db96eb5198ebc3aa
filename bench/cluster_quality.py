"""Clustering quality and cost, replayed on the labelled sets in shared/data/clustering/.

    .venv/bin/python bench/cluster_quality.py [--no-scale] [--sizes 10000,100000] [--strict]

For each labelled set it prints pairwise precision/recall/F1, BCubed P/R/F1, NMI, ARI
and articles per second, against the targets of issue 4 (with ``--strict``, exit
status 1 when one is missed).  Unless ``--no-scale``, it then prints the CPU time to
place one article with 10k and 100k synthetic articles already stored, and the entity
matcher's time per article with 10 and 5,000 entities.

Layout: each set has one *source* function giving ``(Article, label)`` in arrival
order (``events_source``: the three feed files through the daemon's parse and
normalise stages, sorted by published, feed URL, entry index; ``googlenews_source``:
headlines in file order, one second apart) and one *run* function turning a source into
an :class:`Outcome` (``run_clusterer``: the clusterer in-process, default thresholds,
no per-set profile).  A run through the daemon (feeds served on 127.0.0.1, polled, read
back with ``monitor stories --all --json``) only has to produce the same ``Outcome``.
The metrics (``pairwise``, ``bcubed``, ``nmi``, ``ari``) are plain functions of two
label lists.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.cluster import Clusterer
from monitor.model import Article
from monitor.normalize import process_document

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CLUSTERING_DIR = SHARED_DATA / "clustering"
FEEDS_DIR = SHARED_DATA / "feeds"
EVENTS_TSV = CLUSTERING_DIR / "events-2026-04-25.tsv"
GOOGLENEWS_JSONL = CLUSTERING_DIR / "googlenews-headlines.jsonl"

Labelled = tuple[Article, str]


@dataclass(frozen=True)
class Outcome:
    """What one run produced: true and predicted cluster per article, and its cost."""

    truth: list[str]
    predicted: list[str]
    seconds: float


# --- metrics ---------------------------------------------------------------------------


def _contingency(truth: Sequence[str], predicted: Sequence[str]) -> Counter[tuple[str, str]]:
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    return Counter(zip(truth, predicted, strict=True))


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def pairwise(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, float]:
    """Pairwise precision, recall, F1 over all article pairs (1.0 when no pair at all)."""
    cells = _contingency(truth, predicted)
    together = sum(_pairs(n) for n in cells.values())
    pred_pairs = sum(_pairs(n) for n in Counter(predicted).values())
    true_pairs = sum(_pairs(n) for n in Counter(truth).values())
    p = together / pred_pairs if pred_pairs else 1.0
    r = together / true_pairs if true_pairs else 1.0
    return p, r, _f1(p, r)


def bcubed(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, float]:
    """BCubed precision, recall, F1 (Bagga and Baldwin), averaged over articles."""
    cells = _contingency(truth, predicted)
    n = len(truth)
    if not n:
        return 1.0, 1.0, 1.0
    true_size = Counter(truth)
    pred_size = Counter(predicted)
    p = sum(k * k / pred_size[c] for (_, c), k in cells.items()) / n
    r = sum(k * k / true_size[t] for (t, _), k in cells.items()) / n
    return p, r, _f1(p, r)


def _entropy(counts: Iterable[int], n: int) -> float:
    return -sum(c / n * math.log(c / n) for c in counts if c)


def nmi(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (sklearn's default)."""
    n = len(truth)
    cells = _contingency(truth, predicted)
    true_size = Counter(truth)
    pred_size = Counter(predicted)
    mutual = sum(
        k / n * math.log(k * n / (true_size[t] * pred_size[c])) for (t, c), k in cells.items()
    )
    h_true = _entropy(true_size.values(), n)
    h_pred = _entropy(pred_size.values(), n)
    if h_true == 0 and h_pred == 0:
        return 1.0
    return mutual / ((h_true + h_pred) / 2) if h_true + h_pred else 0.0


def ari(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Adjusted Rand index (Hubert and Arabie)."""
    n = len(truth)
    cells = _contingency(truth, predicted)
    index = sum(_pairs(k) for k in cells.values())
    sum_true = sum(_pairs(k) for k in Counter(truth).values())
    sum_pred = sum(_pairs(k) for k in Counter(predicted).values())
    expected = sum_true * sum_pred / _pairs(n) if n > 1 else 0.0
    maximum = (sum_true + sum_pred) / 2
    return (index - expected) / (maximum - expected) if maximum != expected else 1.0


def report(name: str, outcome: Outcome) -> dict[str, float]:
    """Every figure of one run, by name."""
    pp, pr, pf = pairwise(outcome.truth, outcome.predicted)
    bp, br, bf = bcubed(outcome.truth, outcome.predicted)
    n = len(outcome.truth)
    return {
        "articles": float(n),
        "stories": float(len(set(outcome.predicted))),
        "events": float(len(set(outcome.truth))),
        "pair_p": pp,
        "pair_r": pr,
        "pair_f1": pf,
        "b3_p": bp,
        "b3_r": br,
        "b3_f1": bf,
        "nmi": nmi(outcome.truth, outcome.predicted),
        "ari": ari(outcome.truth, outcome.predicted),
        "per_second": n / outcome.seconds if outcome.seconds else float("inf"),
    }


# --- article sources -------------------------------------------------------------------


def _feed_articles(path: Path, feed_url: str, fetched: datetime) -> list[Article]:
    """The feed file's articles, through the daemon's parse and normalise stages."""
    processed = process_document(
        feed_url,
        path.read_bytes(),
        url=feed_url,
        content_type="application/xml",
        fetched=fetched,
    )
    return list(processed.articles)


def events_source(tsv: Path = EVENTS_TSV) -> list[Labelled]:
    """The events set: the three fast-news-reader feeds, labelled, in arrival order."""
    with tsv.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    by_guid = {(row["file"], row["entry_id"]): row["event"] for row in rows}
    by_link = {(row["file"], row["link"]): row["event"] for row in rows}
    fetched = datetime(2026, 4, 25, 21, 0, tzinfo=UTC)
    labelled: list[Labelled] = []
    for file in sorted({row["file"] for row in rows}):
        feed_url = f"http://127.0.0.1:8000/{file}"
        for article in _feed_articles(FEEDS_DIR / file, feed_url, fetched):
            # a guid that is not a URL comes back resolved against the feed's URL
            guid = article.guid.removeprefix(feed_url.rsplit("/", 1)[0] + "/")
            label = by_guid.get((file, guid)) or by_link[(file, article.url or "")]
            labelled.append((article, label))
    if len(labelled) != len(rows):
        raise ValueError(f"{len(labelled)} articles for {len(rows)} labelled entries")
    labelled.sort(key=lambda item: (item[0].published, item[0].feed_url, item[0].entry_index))
    return labelled


def googlenews_source(jsonl: Path = GOOGLENEWS_JSONL) -> list[Labelled]:
    """GoogleNews headlines in file order, title only, published one second apart."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    labelled: list[Labelled] = []
    with jsonl.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            row = json.loads(line)
            when = start + timedelta(seconds=index)
            labelled.append((_headline(row["id"], row["text"], when), str(row["story"])))
    return labelled


def _headline(key: str, text: str, when: datetime, feed: str = "googlenews") -> Article:
    return Article(
        feed_url=f"http://127.0.0.1:8000/{feed}",
        entry_index=0,
        guid=key,
        url=None,
        canonical_url=None,
        title=text,
        summary="",
        content="",
        content_hash=hashlib.sha256(f"{key}\n{text}".encode()).hexdigest(),
        published=when,
        fetched=when,
    )


# --- runs ------------------------------------------------------------------------------


def run_clusterer(source: Iterable[Labelled], clusterer: Clusterer | None = None) -> Outcome:
    """Cluster the source in-process, as the daemon's planner does (no tracked entities)."""
    clusterer = clusterer or Clusterer()
    items = list(source)
    counter = iter(range(1, len(items) + 1))
    predicted: list[str] = []
    began = time.perf_counter()
    for article, _label in items:
        decision = clusterer.place(article, (), lambda: f"s{next(counter)}")
        assert decision.story_id is not None
        predicted.append(decision.story_id)
    seconds = time.perf_counter() - began
    return Outcome([label for _, label in items], predicted, seconds)


SETS: dict[str, Callable[[], list[Labelled]]] = {
    "events-2026-04-25.tsv": events_source,
    "googlenews-headlines.jsonl": googlenews_source,
}

TARGETS: dict[str, dict[str, float]] = {
    "events-2026-04-25.tsv": {"pair_p": 0.85, "pair_f1": 0.60},
    "googlenews-headlines.jsonl": {"b3_p": 0.90, "b3_f1": 0.80, "nmi": 0.90},
}


# --- scale ------------------------------------------------------------------------------


def synthetic_articles(count: int, seed: int = 7, every: float = 30.0) -> Iterator[Labelled]:
    """Realistic-looking articles: GoogleNews words recombined into events.

    Each event has a few topic words and a made-up name; each article takes some of
    them plus common words drawn by corpus frequency.  One article every ``every``
    seconds (2,880 a day); event sizes are long-tailed, most events a single article.
    """
    rng = random.Random(seed)
    words: Counter[str] = Counter()
    with GOOGLENEWS_JSONL.open(encoding="utf-8") as handle:
        for line in handle:
            words.update(json.loads(line)["text"].split())
    vocab = sorted(words)
    common = [w for w, _ in words.most_common(2000)]
    weights = [words[w] for w in common]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    syllables = ["ka", "lo", "mi", "ter", "van", "dor", "sel", "ru", "bex", "nia", "gul", "fi"]
    open_events: list[tuple[str, list[str], int]] = []
    made = 0
    while made < count:
        if not open_events or rng.random() < 0.45:
            name = "".join(rng.choice(syllables) for _ in range(3)).title()
            topic = rng.sample(vocab, 4)
            size = min(int(rng.paretovariate(1.3)), 40)
            open_events.append((f"e{made}", [name, *topic], size))
        slot = rng.randrange(len(open_events))
        event, topic, left = open_events[slot]
        picked = rng.sample(topic, 3) + rng.choices(common, weights, k=4)
        rng.shuffle(picked)
        body = rng.sample(topic, 2) + rng.choices(common, weights, k=14)
        when = start + timedelta(seconds=every * made)
        article = Article(
            feed_url=f"http://127.0.0.1:8000/synthetic/{made % 50}",
            entry_index=made,
            guid=f"syn-{made}",
            url=f"http://127.0.0.1:8000/a/{made}",
            canonical_url=f"http://127.0.0.1:8000/a/{made}",
            title=" ".join(picked).capitalize(),
            summary=" ".join(body) + ".",
            content="",
            content_hash=f"h{made}",
            published=when,
            fetched=when,
        )
        made += 1
        yield article, event
        if left <= 1:
            open_events.pop(slot)
        else:
            open_events[slot] = (event, topic, left - 1)
        if len(open_events) > 400:
            open_events.pop(0)


def time_per_article(stored: int, measured: int = 2000, chunks: int = 4) -> tuple[float, int]:
    """CPU microseconds per placed article with ``stored`` articles already stored.

    The stored articles are replayed (the warm start); then ``measured`` more are placed
    in ``chunks`` batches and the median batch is reported, so that a busy machine
    disturbs the figure less.  Also returns how many articles the clusterer holds.
    """
    clusterer = Clusterer()
    stream = synthetic_articles(stored + measured)
    clusterer.replay((article, label, ()) for article, label in _take(stream, stored))
    ids = iter(range(measured))
    per_chunk: list[float] = []
    for _ in range(chunks):
        batch = list(_take(stream, measured // chunks))
        began = time.process_time()
        for article, _label in batch:
            clusterer.place(article, (), lambda: f"new{next(ids)}")
        per_chunk.append((time.process_time() - began) / len(batch) * 1e6)
    return statistics.median(per_chunk), clusterer.live_articles


@dataclass(frozen=True)
class _Alias:
    text: str
    case: str = "ignore"


@dataclass(frozen=True)
class _Entity:
    name: str
    aliases: tuple[_Alias, ...]
    exclude: tuple[str, ...]


def synthetic_entities(count: int, seed: int = 11) -> list[_Entity]:
    """Watch-list entries: two- or three-word names, a few aliases, some exact-case."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ter", "van", "dor", "sel", "ru", "bex", "nia", "gul", "fi"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).title()

    entities = []
    for i in range(count):
        name = " ".join(word() for _ in range(rng.randint(2, 3))) + f" {i}"
        aliases = tuple(_Alias(word()) for _ in range(rng.randint(0, 2)))
        if rng.random() < 0.1:
            aliases += (_Alias(word().upper()[:4], "exact"),)
        exclude = (f"{word()} {word()}",) if rng.random() < 0.05 else ()
        entities.append(_Entity(name, aliases, exclude))
    return entities


def entity_match_time(counts: Sequence[int] = (10, 5000)) -> list[tuple[int, float, float]]:
    """(entities, build ms, µs per article) matching the events set's articles."""
    from monitor.entities import EntityMatcher

    articles = [article for article, _ in events_source()]
    out = []
    for count in counts:
        entities = synthetic_entities(count)
        began = time.process_time()
        matcher = EntityMatcher(entities)
        built = time.process_time() - began
        began = time.process_time()
        for _ in range(5):
            for a in articles:
                matcher.match(a.title, a.summary, a.content)
        per = (time.process_time() - began) / (5 * len(articles))
        out.append((count, built * 1e3, per * 1e6))
    return out


def _take(stream: Iterator[Labelled], n: int) -> Iterator[Labelled]:
    for _ in range(n):
        yield next(stream)


# --- main -------------------------------------------------------------------------------


def _print_report(name: str, figures: dict[str, float]) -> None:
    print(
        f"\n{name}: {int(figures['articles'])} articles, {int(figures['events'])} labelled "
        f"events, {int(figures['stories'])} stories"
    )
    print(
        "  pairwise  P {pair_p:.3f}  R {pair_r:.3f}  F1 {pair_f1:.3f}\n"
        "  BCubed    P {b3_p:.3f}  R {b3_r:.3f}  F1 {b3_f1:.3f}\n"
        "  NMI {nmi:.3f}  ARI {ari:.3f}  {per_second:,.0f} articles/s".format(**figures)
    )
    for metric, target in TARGETS.get(name, {}).items():
        verdict = "ok" if figures[metric] >= target else "MISSED"
        print(f"  target {metric} >= {target:.2f}: {figures[metric]:.3f} {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-scale", action="store_true", help="skip the synthetic scale run")
    parser.add_argument("--sizes", default="10000,100000", help="stored articles to time at")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    missed = False
    for name, source in SETS.items():
        figures = report(name, run_clusterer(source()))
        _print_report(name, figures)
        missed |= any(figures[m] < t for m, t in TARGETS.get(name, {}).items())
    if not args.no_scale:
        print("\nper-article clustering time (place: decide + record), synthetic articles")
        timings: list[float] = []
        for size in (int(s) for s in args.sizes.split(",")):
            micros, live = time_per_article(size)
            timings.append(micros)
            print(f"  {size:>7,} stored ({live:,} in the window index): {micros:,.0f} µs/article")
        if len(timings) >= 2:
            print(f"  ratio {timings[-1] / timings[0]:.2f} (target <= 1.5)")
        print("\nentity matching, per article of the events set")
        for count, build_ms, micros in entity_match_time():
            print(
                f"  {count:>5,} entities: {micros:,.0f} µs/article (automaton built in "
                f"{build_ms:,.0f} ms)"
            )
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
