"""Clustering quality and cost, replayed on the labelled sets in shared/data/clustering/.

    .venv/bin/python bench/cluster_quality.py [--in-process] [--sets NAME,...]
        [--batch 500] [--keep DIR] [--no-scale] [--sizes 10000,100000] [--strict]

For each labelled set it prints pairwise precision/recall/F1, BCubed P/R/F1, NMI, ARI
and articles per second, against the targets of issue 4 (with ``--strict``, exit
status 1 when one is missed).  Unless ``--no-scale``, it then prints the CPU time to
place one article with 10k and 100k synthetic articles already stored, and the entity
matcher's time per article with 10 and 5,000 entities.

By default each set goes through the daemon's own code path: its feed documents are
served on 127.0.0.1 (``tests.feedserver``), polled with the real ``monitor poll`` (a
fresh SQLite database; fetch, parse, normalise, dedupe, cluster in the tick's order,
store), and read back with ``monitor stories --all --json``; each labelled entry is
mapped to its story by its link.  ``--in-process`` runs the same documents through
``process_document`` and the :class:`~monitor.cluster.Clusterer` in this process (no
HTTP, no storage, no restarts): the same decisions in a fraction of the time, for
tuning.  Both use the default thresholds, no per-set profile.

Layout: each set is a :class:`Replay` (polling rounds of feed documents, plus each
labelled entry's link and event): ``events_replay`` serves the three fast-news-reader
files as three feeds in one poll; ``googlenews_replay`` serves the headlines in file
order through one feed without dates (so ``published`` is the fetch time), ``--batch``
new items a round.  ``run_daemon`` / ``run_in_process`` turn a replay into a
:class:`Placement` (each link's story); ``outcome`` pairs it with the labels.  The
metrics (``pairwise``, ``bcubed``, ``nmi``, ``ari``) are plain functions of two label
lists.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

if __package__ in (None, ""):  # run as a script: make ``tests.feedserver`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.cluster import Clusterer  # noqa: E402
from monitor.model import Article  # noqa: E402
from monitor.normalize import process_document  # noqa: E402

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
    stored: int = 0  # articles stored (placed); default: one per labelled entry


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
        "per_second": (outcome.stored or n) / outcome.seconds if outcome.seconds else float("inf"),
    }


# --- replays: what the daemon is served ---------------------------------------------------

CONTENT_TYPE = "application/xml"  # no charset: the documents' XML declarations decide
IN_PROCESS_BASE = "http://127.0.0.1:8000"  # feed URLs of the in-process path
GOOGLENEWS_BATCH = 500  # headlines new to the GoogleNews feed per polling round


@dataclass(frozen=True)
class Document:
    """One feed document, served at ``path`` (and configured as a feed) in one round."""

    path: str
    body: bytes
    content_type: str = CONTENT_TYPE


@dataclass(frozen=True)
class Replay:
    """A labelled set as the daemon meets it: polling rounds of feed documents.

    ``rounds[i]`` holds the documents served, one feed each, for the i-th poll (the
    feeds of a round are configured and polled together; a feed keeps its URL from
    round to round).  ``labels`` gives each labelled entry's link and true event; an
    article is mapped back to its label by its link.
    """

    rounds: tuple[tuple[Document, ...], ...]
    labels: tuple[tuple[str, str], ...]  # (link, event)


def events_replay(tsv: Path = EVENTS_TSV) -> Replay:
    """The events set: the three fast-news-reader files as three feeds, one poll."""
    with tsv.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    documents = tuple(
        Document("/" + file, (FEEDS_DIR / file).read_bytes())
        for file in sorted({row["file"] for row in rows})
    )
    return Replay((documents,), tuple((row["link"], row["event"]) for row in rows))


def googlenews_replay(jsonl: Path = GOOGLENEWS_JSONL, batch: int = GOOGLENEWS_BATCH) -> Replay:
    """GoogleNews headlines in file order through one feed, ``batch`` new items a round.

    The items carry no date, so the daemon dates them at fetch time; they are listed in
    file order, so within a round (one fetch time, one feed) the entry index keeps the
    file's order.  Each round's document also lists the previous round's items again,
    as a real feed lists its recent items: those are known and skipped.  The first
    round is the feed's baseline (stored and clustered like the others).
    """
    with jsonl.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    items = [(f"https://gn.example/{row['id']}", str(row["text"])) for row in rows]
    rounds = tuple(
        (
            Document(
                "/googlenews.xml", rss_document("GoogleNews", items[max(0, i - batch) : i + batch])
            ),
        )
        for i in range(0, len(items), batch)
    )
    return Replay(
        rounds, tuple((link, str(row["story"])) for (link, _), row in zip(items, rows, strict=True))
    )


def rss_document(title: str, items: Sequence[tuple[str, str]]) -> bytes:
    """An RSS 2.0 document of (link, title) items: no date, no guid, no description."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>https://gn.example/</link>",
        f"<description>{escape(title)} replay</description>",
        *(
            f"<item><title>{escape(text)}</title><link>{escape(link)}</link></item>"
            for link, text in items
        ),
        "</channel></rss>",
    ]
    return "\n".join(lines).encode("utf-8")


def replay_articles(
    replay: Replay, start: datetime, base: str = IN_PROCESS_BASE
) -> Iterator[list[Article]]:
    """Per round, its articles through the daemon's parse and normalise stages, in the
    order one tick clusters them: (published, feed URL, entry index)."""
    for number, documents in enumerate(replay.rounds):
        fetched = start + timedelta(seconds=number)
        articles: list[Article] = []
        for doc in documents:
            feed_url = base + doc.path
            articles += process_document(
                feed_url, doc.body, url=feed_url, content_type=doc.content_type, fetched=fetched
            ).articles
        articles.sort(key=lambda a: (a.published, a.feed_url, a.entry_index))
        yield articles


# --- runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """What a run stored: each article link's story, how many articles, at what cost."""

    story_of_link: dict[str, str]
    stored: int
    seconds: float  # the whole run (in-process: parse, normalise, cluster)
    detail: str = ""


def outcome(replay: Replay, placement: Placement) -> Outcome:
    """True and predicted story of each labelled entry."""
    missing = [link for link, _ in replay.labels if link not in placement.story_of_link]
    if missing:
        raise RuntimeError(f"{len(missing)} labelled entries not stored, e.g. {missing[:3]}")
    return Outcome(
        truth=[label for _, label in replay.labels],
        predicted=[placement.story_of_link[link] for link, _ in replay.labels],
        seconds=placement.seconds,
        stored=placement.stored,
    )


def run_in_process(replay: Replay, clusterer: Clusterer | None = None) -> Placement:
    """The fast path: parse, normalise and cluster in this process, no HTTP, no storage.

    Dedupes as the ingest planner does (a feed's guid seen before, or a canonical URL
    stored before, is not placed again) and places the rest with default thresholds and
    no tracked entities.
    """
    clusterer = clusterer or Clusterer()
    ids = iter(range(1, 1 << 62))
    story_of_link: dict[str, str] = {}
    by_guid: dict[tuple[str, str], str] = {}
    by_url: dict[str, str] = {}
    stored = 0
    began = time.perf_counter()
    for articles in replay_articles(replay, datetime.now(UTC).replace(microsecond=0)):
        for article in articles:
            story = by_guid.get((article.feed_url, article.guid))
            if story is None and article.canonical_url:
                story = by_url.get(article.canonical_url)
            if story is None:
                decision = clusterer.place(article, (), lambda: f"s{next(ids)}")
                assert decision.story_id is not None
                story = decision.story_id
                stored += 1
                if article.canonical_url:
                    by_url[article.canonical_url] = story
            by_guid[(article.feed_url, article.guid)] = story
            if article.url:
                story_of_link.setdefault(article.url, story)
    return Placement(story_of_link, stored, time.perf_counter() - began)


_POLL_REPORT = re.compile(r"polled \d+ feeds in ([\d.]+)s")


def run_daemon(replay: Replay, workdir: Path) -> Placement:
    """The daemon's path: serve each round on 127.0.0.1, run ``monitor poll``, and read
    the stories back with ``monitor stories --all --json`` (SQLite in ``workdir``)."""
    from tests.feedserver import FeedServer

    config = workdir / "feeds.yaml"
    seconds = cycle = 0.0
    with FeedServer(root=None) as server:
        for documents in replay.rounds:
            for doc in documents:
                server.route(doc.path, body=doc.body, headers={"Content-Type": doc.content_type})
            _write_config(config, [server.url(doc.path) for doc in documents])
            began = time.perf_counter()
            report = _monitor(config, "poll").stderr
            seconds += time.perf_counter() - began
            found = _POLL_REPORT.search(report)
            if found is not None:
                cycle += float(found.group(1))
            _check_feeds(config)
    stories = json.loads(_monitor(config, "stories", "--all", "--json").stdout)
    story_of_link = {
        article["url"]: story["id"]
        for story in stories
        for article in story["articles"]
        if article["url"]
    }
    stored = sum(len(story["articles"]) for story in stories)
    detail = f"{len(replay.rounds)} `monitor poll` runs, {seconds:.1f} s wall"
    if cycle:
        detail += f" (poll cycles {cycle:.1f} s: {stored / cycle:,.0f} articles/s)"
    return Placement(story_of_link, stored, seconds, detail)


def _check_feeds(config: Path) -> None:
    """Every configured feed was fetched and read (a failed poll would skew the figures)."""
    for feed in json.loads(_monitor(config, "feeds", "--json").stdout):
        if feed["last_status"] != 200 or feed["consecutive_errors"]:  # stale is no error here
            raise RuntimeError(f"polling {feed['url']} failed: {feed['last_error']}")


def _write_config(path: Path, feed_urls: Sequence[str]) -> None:
    feeds = "".join(f"  - url: {url}\n" for url in feed_urls)
    path.write_text(
        f"version: 1\nsettings:\n  database: sqlite:///monitor.db\n  timeout: 30s\nfeeds:\n{feeds}",
        encoding="utf-8",
    )


def _monitor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "monitor", "--config", str(config), "--log-level", "warning"]
    done = subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"monitor {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


SETS: dict[str, Callable[[int], Replay]] = {
    "events-2026-04-25.tsv": lambda batch: events_replay(),
    "googlenews-headlines.jsonl": lambda batch: googlenews_replay(batch=batch),
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

    start = datetime.now(UTC)
    articles = [a for batch in replay_articles(events_replay(), start) for a in batch]
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--in-process", action="store_true", help="cluster in this process (fast, for tuning)"
    )
    parser.add_argument("--sets", default=",".join(SETS), help="labelled sets to replay")
    parser.add_argument(
        "--batch", type=int, default=GOOGLENEWS_BATCH, help="GoogleNews items new per round"
    )
    parser.add_argument("--keep", type=Path, help="daemon path: keep the database in this dir")
    parser.add_argument("--no-scale", action="store_true", help="skip the synthetic scale run")
    parser.add_argument("--sizes", default="10000,100000", help="stored articles to time at")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    missed = False
    path = "in-process" if args.in_process else "daemon (`monitor poll` on served feeds)"
    print(f"path: {path}; default thresholds")
    for name in args.sets.split(","):
        replay = SETS[name](args.batch)
        if args.in_process:
            placement = run_in_process(replay)
        elif args.keep is not None:
            workdir = args.keep / name.split(".")[0]
            workdir.mkdir(parents=True, exist_ok=False)
            placement = run_daemon(replay, workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="cluster-quality-") as tmp:
                placement = run_daemon(replay, Path(tmp))
        figures = report(name, outcome(replay, placement))
        _print_report(name, figures)
        if placement.detail:
            print(f"  {placement.detail}")
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
