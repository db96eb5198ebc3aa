"""Bulk-fill a SQLite database with realistic synthetic articles, for the scale benchmarks.

    .venv/bin/python bench/fill_db.py --articles 1000000 --db /tmp/big.db [--days 85] [--feeds 2000]

The schema comes from the product (``storage.engine.make_engine`` + ``migrate``); rows go
in through SQLAlchemy Core executemany on the ``storage.tables`` tables, one transaction
per batch, with ``PRAGMA synchronous=OFF`` (and no rollback journal, no foreign-key
checks) while filling. Secondary indexes are dropped first and rebuilt at the end from
the schema's own ``CREATE INDEX`` statements, then ``ANALYZE`` (``--reindex`` also
runs a full ``REINDEX``).

What the data looks like:

* ``--feeds`` synthetic outlets (baselined, polled, not in any bench config);
* stories of 1 to ~40 articles (most alone, a long tail of big ones), each with its
  own rare names and topic words, so clustering finds real structure when it warms up;
  articles of one story are published within a few hours of each other, by different
  outlets;
* ``published`` spread uniformly over the last ``--days`` days (default 85, inside the
  default 90-day retention), so most articles are older than the story window and the
  clusterer's memory (2 x 72 h) holds about ``articles * 6 / days`` of them;
* ~5% of articles carried by a second feed (extra ``article_sources`` and ``seen_guids``);
* ~8% of stories about a tracked entity of the bench config: ``mentions``,
  ``story_entities`` and, for the alerted pairs, a ``sent`` outbox row;
* every article has its dedupe keys (``seen_guids``, ``seen_urls``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, Table, event, insert

from bench.common import ENTITIES
from monitor.normalize import content_hash
from storage import tables
from storage.engine import make_engine, migrate

_COMMON_WORDS = (
    "says said report reports after over amid new first year years people government "
    "officials minister president state country city police court week day month "
    "talks deal plan plans support attack attacks killed dead help crisis election vote "
    "party leader leaders military forces troops war peace border security economy "
    "market markets prices price rate rates bank banks company companies shares profit "
    "growth jobs workers strike union health hospital patients doctors school students "
    "climate energy power gas oil water weather storm flood fire heat record high low "
    "rise fall cut cuts calls call warns warning says back home world national local "
    "official public private former latest major big small long short top key final "
    "team game match season win wins lost cup league player coach fans stadium "
    "film music show star series book art festival museum award prize "
    "court judge trial case charges law rules ban probe investigation inquiry "
    "data tech software users app phone online internet service services network "
    "study research scientists space mission launch test tests new plan budget tax "
    "taxes spending debt deficit inflation trade tariffs exports imports summit "
    "meeting agreement treaty sanctions talks ceasefire aid refugees migrants "
    "protest protests rally march police arrest arrested suspect victims families "
    "children women men young old million billion percent thousands hundreds dozens "
    "despite during before while since under against between across around"
)
COMMON = _COMMON_WORDS.split()

_SYLLABLES = (
    "ka ri to na mi ro sa le vi den mar tin hal ber gor vas lin dor fen kir "
    "zan pol mek tas ur an el or is us ov ska ber wald stein ton ville ford"
)
SYLLABLES = _SYLLABLES.split()

SUMMARY_WORDS = (25, 55)
BODY_EXTRA_WORDS = (120, 320)
BODY_SHARE = 0.3  # articles whose content is more than their summary
EXTRA_SOURCE_SHARE = 0.05
ENTITY_STORY_SHARE = 0.08


@dataclass
class Batch:
    stories: list[dict[str, Any]] = field(default_factory=list)
    articles: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    guids: list[dict[str, Any]] = field(default_factory=list)
    urls: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


class Generator:
    """Deterministic (seeded) synthetic news."""

    def __init__(self, seed: int, feeds: int, days: float, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.feeds = feeds
        self.span = timedelta(days=days).total_seconds()
        self.now = now
        self.story_no = 0
        self.article_no = 0

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.rng.getrandbits(96):024x}"

    def _name(self) -> str:
        rng = self.rng
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    def _story_size(self) -> int:
        r = self.rng.random()
        if r < 0.62:
            return 1
        if r < 0.85:
            return self.rng.randint(2, 3)
        if r < 0.97:
            return self.rng.randint(4, 9)
        return self.rng.randint(10, 40)

    def _words(self, topic: list[str], n: int, topic_share: float) -> list[str]:
        rng = self.rng
        t = int(n * topic_share + rng.random())
        words = rng.choices(COMMON, k=n - t)
        for word in rng.choices(topic, k=t):
            words.insert(rng.randrange(len(words) + 1), word)
        return words

    def batch(self, articles: int) -> Batch:
        """Whole stories until at least ``articles`` articles."""
        b = Batch()
        rng = self.rng
        while len(b.articles) < articles:
            self._story(b, rng)
        return b

    def _story(self, b: Batch, rng: random.Random) -> None:
        self.story_no += 1
        sid = self._id("s")
        names = [f"{self._name()} {self._name()}" for _ in range(rng.randint(1, 2))]
        place = self._name()
        keywords = rng.sample(COMMON, 3)
        topic = [*names, place, *keywords, *keywords]
        entity = (
            ENTITIES[rng.randrange(len(ENTITIES))] if rng.random() < ENTITY_STORY_SHARE else None
        )
        start = self.now - timedelta(seconds=rng.uniform(0, self.span))
        size = self._story_size()
        spread = min(6 * 3600.0, (self.now - start).total_seconds())  # never in the future
        pubs = sorted(start + timedelta(seconds=rng.uniform(0, spread)) for _ in range(size))
        first_seen = last_seen = None
        last_pub = pubs[0]
        first_mention: str | None = None
        feeds_used: set[int] = set()
        title0 = ""
        for k, published in enumerate(pubs):
            fetched = min(published + timedelta(seconds=rng.uniform(30, 1800)), self.now)
            feed_id = rng.randint(1, self.feeds)
            feeds_used.add(feed_id)
            aid = self._id("a")
            self.article_no += 1
            title_words = self._words(topic, rng.randint(6, 11), 0.45)
            summary_words = self._words(topic, rng.randint(*SUMMARY_WORDS), 0.2)
            alias = field_name = None
            if entity is not None and rng.random() < 0.7:
                aliases = [
                    a if isinstance(a, str) else a["text"] for a in entity.get("aliases", ())
                ]
                alias = rng.choice([entity["name"], *aliases])
                field_name = "title" if rng.random() < 0.5 else "summary"
                target = title_words if field_name == "title" else summary_words
                target.insert(rng.randrange(len(target) + 1), alias)
            title = " ".join(title_words)
            title = title[0].upper() + title[1:]
            summary = " ".join(summary_words).capitalize() + "."
            if rng.random() < BODY_SHARE:
                extra = self._words(topic, rng.randint(*BODY_EXTRA_WORDS), 0.1)
                content = summary + " " + " ".join(extra).capitalize() + "."
            else:
                content = summary
            slug = "-".join(title_words[:6]).lower()
            url = f"https://www.outlet{feed_id}.example.com/news/{self.article_no}-{slug}"
            digest = content_hash(title, summary, content)
            b.articles.append(
                {
                    "id": aid,
                    "feed_id": feed_id,
                    "story_id": sid,
                    "guid": url,
                    "url": url,
                    "canonical_url": url,
                    "title": title,
                    "summary": summary,
                    "content": content,
                    "content_hash": digest,
                    "published": published,
                    "fetched": fetched,
                    "entry_index": rng.randint(0, 29),
                    "baseline": False,
                    "reason_method": "new" if k == 0 else "similar",
                    "reason_score": 0.0 if k == 0 else round(rng.uniform(0.3, 0.9), 3),
                    "reason_shared": "[]" if k == 0 else f'["{keywords[0]}", "{place.lower()}"]',
                }
            )
            b.sources.append({"article_id": aid, "feed_id": feed_id, "first_seen": fetched})
            b.guids.append(
                {"feed_id": feed_id, "guid": url, "article_id": aid, "content_hash": digest}
            )
            b.urls.append({"canonical_url": url, "article_id": aid})
            if rng.random() < EXTRA_SOURCE_SHARE:
                other = rng.randint(1, self.feeds)
                if other != feed_id:
                    feeds_used.add(other)
                    seen = min(fetched + timedelta(seconds=rng.uniform(60, 3600)), self.now)
                    b.sources.append({"article_id": aid, "feed_id": other, "first_seen": seen})
                    b.guids.append(
                        {"feed_id": other, "guid": url, "article_id": aid, "content_hash": digest}
                    )
                    last_seen = max(last_seen or seen, seen)
            if alias is not None and entity is not None:
                b.mentions.append(
                    {
                        "article_id": aid,
                        "entity": entity["name"],
                        "alias": alias,
                        "field": field_name,
                    }
                )
                first_mention = first_mention or aid
            first_seen = min(first_seen or fetched, fetched)
            last_seen = max(last_seen or fetched, fetched)
            last_pub = max(last_pub, published)
            title0 = title0 or title
        assert first_seen is not None and last_seen is not None
        b.stories.append(
            {
                "id": sid,
                "title": title0,
                "first_seen": first_seen,
                "last_seen": last_seen,
                "last_published": last_pub,
                "sources": len(feeds_used),
            }
        )
        if entity is not None and first_mention is not None:
            alerted = rng.random() < 0.5
            b.pairs.append(
                {
                    "story_id": sid,
                    "entity": entity["name"],
                    "first_article_id": first_mention,
                    "alerted": alerted,
                }
            )
            if alerted:
                b.outbox.append(
                    {
                        "id": self._id("al"),
                        "channel": "log",
                        "event": "story.new",
                        "entity": entity["name"],
                        "matched": "[]",
                        "story_id": sid,
                        "state": "sent",
                        "attempts": 1,
                        "created_at": first_seen,
                        "next_attempt": None,
                        "sent_at": first_seen + timedelta(seconds=2),
                    }
                )


def feed_rows(n: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "url": f"https://www.outlet{i}.example.com/rss",
            "name": f"Outlet {i}",
            "title": f"Outlet {i} - News",
            "enabled": True,
            "etag": f'"etag-{i}"',
            "last_fetch": now - timedelta(minutes=5),
            "last_success": now - timedelta(minutes=5),
            "last_status": 200,
            "consecutive_errors": 0,
            "next_poll": now + timedelta(minutes=10),
            "interval_seconds": 900.0,
            "baselined": True,
            "last_new_item": now - timedelta(minutes=30),
            "broken": False,
            "created_at": now - timedelta(days=120),
        }
        for i in range(1, n + 1)
    ]


def _fill_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """After the product's own pragmas: speed over durability while filling."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=OFF")
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.execute("PRAGMA cache_size=-524288")  # 512 MB
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _secondary_indexes(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).all()
    return [(str(name), str(sql)) for name, sql in rows]


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(table), rows)


def fill(
    db: Path, articles: int, *, feeds: int, days: float, batch: int, seed: int, reindex: bool
) -> dict[str, int]:
    if db.exists():
        raise SystemExit(f"{db} exists: give a new path (or --force)")
    url = f"sqlite:///{db.resolve()}"
    engine = make_engine(url)
    migrate(engine)  # the product's schema, recorded at its head revision
    engine.dispose()
    event.listen(engine, "connect", _fill_pragmas)
    now = datetime.now(UTC).replace(tzinfo=None)
    gen = Generator(seed, feeds, days, now)
    counts = dict.fromkeys(("stories", "articles", "sources", "mentions", "pairs", "outbox"), 0)
    started = time.perf_counter()
    with engine.connect() as conn:
        indexes = _secondary_indexes(conn)
        for name, _sql in indexes:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.commit()
        _insert(conn, tables.feeds, feed_rows(feeds, now))
        conn.commit()
        done = 0
        while done < articles:
            b = gen.batch(min(batch, articles - done))
            _insert(conn, tables.stories, b.stories)
            _insert(conn, tables.articles, b.articles)
            _insert(conn, tables.article_sources, b.sources)
            _insert(conn, tables.mentions, b.mentions)
            _insert(conn, tables.story_entities, b.pairs)
            _insert(conn, tables.seen_guids, b.guids)
            _insert(conn, tables.seen_urls, b.urls)
            _insert(conn, tables.outbox, b.outbox)
            conn.commit()
            done += len(b.articles)
            for key, rows in (
                ("stories", b.stories),
                ("articles", b.articles),
                ("sources", b.sources),
                ("mentions", b.mentions),
                ("pairs", b.pairs),
                ("outbox", b.outbox),
            ):
                counts[key] += len(rows)
            elapsed = time.perf_counter() - started
            print(
                f"  {done:>9,} articles  {elapsed:7.1f}s  ({done / elapsed:,.0f}/s)",
                flush=True,
            )
        t_index = time.perf_counter()
        for _name, sql in indexes:
            conn.exec_driver_sql(sql)
        conn.commit()
        print(f"  indexes rebuilt in {time.perf_counter() - t_index:.1f}s", flush=True)
        if reindex:
            t_re = time.perf_counter()
            conn.exec_driver_sql("REINDEX")
            conn.commit()
            print(f"  REINDEX in {time.perf_counter() - t_re:.1f}s", flush=True)
        t_an = time.perf_counter()
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
        print(f"  ANALYZE in {time.perf_counter() - t_an:.1f}s", flush=True)
    engine.dispose()
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--articles", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, required=True, help="SQLite file to create")
    ap.add_argument("--feeds", type=int, default=2000, help="synthetic outlets (default 2000)")
    ap.add_argument("--days", type=float, default=85.0, help="time span of published dates")
    ap.add_argument("--batch", type=int, default=50_000, help="articles per transaction")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reindex", action="store_true", help="also run a full REINDEX")
    ap.add_argument("--force", action="store_true", help="replace an existing --db")
    args = ap.parse_args(argv)
    if args.force:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(args.db) + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    print(f"filling {args.db} with {args.articles:,} articles over {args.days:g} days", flush=True)
    counts = fill(
        args.db,
        args.articles,
        feeds=args.feeds,
        days=args.days,
        batch=args.batch,
        seed=args.seed,
        reindex=args.reindex,
    )
    seconds = time.perf_counter() - started
    size = args.db.stat().st_size / 1e6
    print(
        f"done in {seconds:.1f}s ({counts['articles'] / seconds:,.0f} articles/s): "
        + ", ".join(f"{k}={v:,}" for k, v in counts.items())
        + f"; {size:,.0f} MB"
    )


if __name__ == "__main__":
    main()
