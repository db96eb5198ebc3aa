"""What clustering's text features cost: CPU where they are made, pickling, memory.

    .venv/bin/python bench/features_cost.py [--repeat 3] [--skip-memory]

On the real outlets' files of ``../shared/data/feeds`` (the readable ones, each parsed
once, in this process) it prints CPU seconds (best of ``--repeat``) for:

* ``process_document`` over every file, without and with the prepared features (the
  extra is what the pool workers pay);
* ``extract`` over every article, no rubrics;
* the clusterer placing every article, in the tick's order, with and without the
  prepared features (without: what a warm start from storage and a caller that does
  not prepare pay);
* pickling the parsed feeds back from a worker (dumps + loads), with and without.

Then the memory: bytes of prepared features per parsed article (held until the cycle
is stored), and bytes per article the clusterer holds (tracemalloc, after a warm-up
run so the word caches are not counted) over the corpus plus the labelled sets of
``../shared/data/clustering`` (about 11k articles), re-dated 15 s apart so that all of
them stay in memory; and the CPU and memory of a warm start (``Clusterer.replay``) of
``--synthetic`` articles made like ``bench/fill_db.py``'s, all inside the window.

Runs against whichever ``monitor`` package is first on ``sys.path``: put an older tree
first on ``PYTHONPATH`` to compare (the parts it lacks are left out).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import pickle
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench import cluster_quality as cq  # noqa: E402
from bench.common import FEEDS_DIR, corpus_files  # noqa: E402
from monitor.cluster import Clusterer  # noqa: E402
from monitor.model import Article  # noqa: E402
from monitor.normalize import ProcessedFeed, process_document  # noqa: E402
from monitor.textfeatures import extract  # noqa: E402

FETCHED = datetime(2026, 11, 1, tzinfo=UTC)
BASE = "http://127.0.0.1:8000/"


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """Fewest CPU seconds of ``repeat`` runs (the machine is shared: the minimum is steadiest)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.process_time()
        run()
        times.append(time.process_time() - began)
    return min(times)


def parse_all(documents: Sequence[tuple[str, bytes]], features: bool | None) -> list[ProcessedFeed]:
    extra: dict[str, Any] = {} if features is None else {"features": features}
    parsed = []
    for url, body in documents:
        try:
            parsed.append(
                process_document(url, body, url=url, content_type=None, fetched=FETCHED, **extra)
            )
        except Exception:  # noqa: BLE001 - unreadable corpus files are left out
            continue
    return parsed


def place_all(articles: Sequence[Article]) -> Clusterer:
    clusterer = Clusterer()
    ids = iter(range(1, 1 << 62))
    for article in articles:
        clusterer.place(article, (), lambda: f"s{next(ids)}")
    return clusterer


def stripped(article: Article) -> Article:
    if getattr(article, "features", None) is None:
        return article
    return dataclasses.replace(article, features=None)


def deep_size(obj: object) -> int:
    """Bytes of ``obj`` and of the objects it holds (strings, arrays, tuples)."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, tuple | list):
            stack.extend(item)
        elif hasattr(item, "__slots__") and not isinstance(item, str | bytes):
            stack.extend(getattr(item, name) for name in item.__slots__)
    return total


def memory_articles(corpus: Sequence[Article]) -> list[Article]:
    """Corpus + labelled sets, each article once, re-dated 15 s apart (all stay in memory)."""
    articles = [stripped(a) for a in corpus]
    for replay in (cq.events_replay(), cq.googlenews_replay()):
        seen: set[str] = set()
        for round_articles in cq.replay_articles(replay, FETCHED):
            for article in round_articles:
                if article.guid not in seen:
                    seen.add(article.guid)
                    articles.append(stripped(article))
    return [
        dataclasses.replace(a, published=FETCHED + timedelta(seconds=15 * i))
        for i, a in enumerate(articles)
    ]


def clusterer_bytes(articles: Sequence[Article]) -> tuple[float, int]:
    """Bytes per article a clusterer holds after placing ``articles``, and how many."""
    place_all(articles)  # warm the word caches (stems, folds): shared, bounded, not counted
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    clusterer = place_all(articles)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / clusterer.live_articles, clusterer.live_articles


def synthetic_stored(n: int) -> list[tuple[Article, str, Sequence[str]]]:
    """``n`` articles of ``bench/fill_db.py``'s synthetic news, all inside the story window,
    as a warm start reads them back: (article, story id, entities) in stored order."""
    from bench.fill_db import Generator

    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = Generator(seed=7, feeds=2000, days=3, now=now).batch(n).articles
    rows.sort(key=lambda r: (r["fetched"], r["published"], r["feed_id"], r["entry_index"]))
    stored: list[tuple[Article, str, Sequence[str]]] = []
    for r in rows:
        article = Article(
            feed_url=f"https://www.outlet{r['feed_id']}.example.com/feed",
            entry_index=r["entry_index"],
            guid=r["guid"],
            url=r["url"],
            canonical_url=r["canonical_url"],
            title=r["title"],
            summary=r["summary"],
            content=r["content"],
            content_hash=r["content_hash"],
            published=r["published"],
            fetched=r["fetched"],
        )
        stored.append((article, r["story_id"], ()))
    return stored


def warm_start(stored: Sequence[tuple[Article, str, Sequence[str]]]) -> tuple[float, float]:
    """(CPU seconds to replay ``stored``, bytes per article the clusterer then holds)."""
    Clusterer().replay(stored)  # warm the word caches: shared, bounded, not counted
    gc.collect()
    began = time.process_time()
    Clusterer().replay(stored)
    seconds = time.process_time() - began
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    clusterer = Clusterer()
    clusterer.replay(stored)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return seconds, held / clusterer.live_articles


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (best shown)")
    ap.add_argument("--skip-memory", action="store_true", help="timings only")
    ap.add_argument(
        "--synthetic", type=int, default=20000, help="articles of the synthetic warm start"
    )
    args = ap.parse_args(argv)

    import monitor

    print(f"monitor from {Path(monitor.__file__).parent}")
    documents = [(BASE + f.path, (FEEDS_DIR / f.path).read_bytes()) for f in corpus_files()]
    has_features = "features" in inspect.signature(process_document).parameters
    with_features = parse_all(documents, True if has_features else None)
    plain = parse_all(documents, False) if has_features else with_features
    articles = sorted(
        (a for p in with_features for a in p.articles),
        key=lambda a: (a.published, a.feed_url, a.entry_index),
    )
    bare = [stripped(a) for a in articles]
    print(f"corpus: {len(documents)} files, {len(articles)} articles")

    rows: list[tuple[str, float]] = []

    def timed(label: str, run: Callable[[], object]) -> None:
        rows.append((label, best_of(args.repeat, run)))

    if has_features:
        timed("process_document, no features", lambda: parse_all(documents, False))
        timed("process_document, features", lambda: parse_all(documents, True))
    else:
        timed("process_document", lambda: parse_all(documents, None))
    timed("extract, no rubrics", lambda: [extract(a.title, a.summary, a.content) for a in bare])
    timed("place, features made here", lambda: place_all(bare))
    if has_features:
        timed("place, prepared features", lambda: place_all(articles))
    for label, feeds in (("plain", plain), ("with features", with_features)):
        if label == "with features" and not has_features:
            continue
        blobs = [pickle.dumps(p) for p in feeds]
        timed(f"pickle dumps, {label}", lambda f=feeds: [pickle.dumps(p) for p in f])
        timed(f"pickle loads, {label}", lambda b=blobs: [pickle.loads(x) for x in b])
        print(f"pickled parsed feeds, {label}: {sum(map(len, blobs)) / 1e6:.2f} MB")
    width = max(len(label) for label, _ in rows)
    for label, seconds in rows:
        per = seconds / len(articles) * 1e6
        print(f"  {label:<{width}}  {seconds:6.3f} s CPU  ({per:5.0f} us/article)")

    if has_features:
        sizes = [deep_size(a.features) for a in articles]
        print(f"prepared features held per parsed article: {sum(sizes) / len(sizes):.0f} bytes")
    if not args.skip_memory:
        per_article, live = clusterer_bytes(memory_articles(bare))
        print(f"clusterer memory: {per_article:.0f} bytes per article ({live} articles held)")
        seconds, per_article = warm_start(synthetic_stored(args.synthetic))
        print(
            f"warm start of {args.synthetic} synthetic articles (bench/fill_db.py's): "
            f"{seconds:.2f} s CPU, {per_article:.0f} bytes per article held"
        )


if __name__ == "__main__":
    main()
