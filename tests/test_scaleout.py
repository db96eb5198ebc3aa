"""Several `monitor run` processes on one PostgreSQL database (the machine's server).

Three daemons share 300 local feeds: each due feed is fetched by one instance per
cycle, no article or alert is stored twice, two reports of one event stored by
different instances at the same moment end in one story with one alert, and the feeds
of an instance killed with SIGKILL are taken over once its leases run out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import alertpeers
from tests.alertpeers import WebhookPeer
from tests.clirun import monitor_env
from tests.feedbuild import MARCH, RECRUIT, Item, LiveFeed
from tests.feedserver import FeedServer, RecordedRequest, Reply

webhook_peer = alertpeers.webhook_peer

FEEDS = 300
INTERVAL = 8.0  # seconds between polls of a feed
TIMEOUT = 3.0  # fetch timeout: a lease runs TIMEOUT + 10 s

WORDS = [
    "harbour",
    "orchard",
    "quarry",
    "vineyard",
    "glacier",
    "meadow",
    "canyon",
    "lagoon",
    "prairie",
    "tundra",
    "savanna",
    "estuary",
    "plateau",
    "marsh",
    "delta",
    "fjord",
    "reef",
    "dune",
    "steppe",
    "grove",
]


class Recording:
    """Request times per path, at the server."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def wrap(self, path: str, feed: LiveFeed) -> None:
        def handler(request: RecordedRequest) -> Reply:
            with self._lock:
                self.times.setdefault(path, []).append(time.monotonic())
            return feed.handler(request)

        self.server.route(path, handler=handler)

    server: FeedServer

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {p: len(t) for p, t in self.times.items()}

    def gaps(self) -> list[float]:
        with self._lock:
            return [b - a for ts in self.times.values() for a, b in zip(ts, ts[1:], strict=False)]


def local_item(i: int, cycle: int = 0) -> Item:
    a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS) + cycle) % len(WORDS)]
    return Item(
        f"local-{i}-{cycle}",
        f"Town {i} opens {a} {b} trail number {i * 7 + cycle}",
        f"The {a} and {b} path of town {i} opened to walkers on day {cycle}.",
    )


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


def config(pg: str, urls: list[str], hook: str) -> str:
    feeds = "\n".join(f"  - url: {u}\n    interval: {INTERVAL:g}s" for u in urls)
    return (
        f"version: 1\nsettings:\n  database: {pg}\n  timeout: {TIMEOUT:g}s\n"
        "  min_interval: 1s\n  poll_interval: 8s\n  alert_backlog: true\n"
        f"feeds:\n{feeds}\n"
        "entities:\n  - name: Wagner Group\n    aliases: [Wagner]\n"
        f"alerts:\n  - name: hook\n    type: webhook\n    url: {hook}\n"
    )


def start(cwd: Path, n: int) -> subprocess.Popen[str]:
    log = (cwd / f"instance-{n}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", "feeds.yaml", "run"],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=monitor_env(),
    )


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    return False


def test_three_instances_share_feeds_stories_and_alerts(
    tmp_path: Path, server: FeedServer, pg_url: str, webhook_peer: WebhookPeer
) -> None:
    rec = Recording()
    rec.server = server
    feeds: list[LiveFeed] = []
    urls: list[str] = []
    for i in range(FEEDS):
        feed = LiveFeed(f"Outlet {i}", [local_item(i)])
        if i % 10 == 0:  # one event, reported by 30 outlets, polled by whichever instance
            feed.items.append(Item(f"march-{i}", MARCH[0][0], MARCH[0][1]))
        feeds.append(feed)
        rec.wrap(f"/f/{i}", feed)
        urls.append(server.url(f"/f/{i}"))
    (tmp_path / "feeds.yaml").write_text(config(pg_url, urls, webhook_peer.url))
    procs = [start(tmp_path, n) for n in range(3)]
    engine = sa.create_engine(pg_url)
    try:
        # the first cycle: every feed fetched once
        assert wait_for(lambda: len(rec.counts()) == FEEDS, 90), "not every feed was polled"
        for i in range(5, FEEDS, 10):  # a second event appears in 30 other outlets
            feeds[i].items.append(Item(f"recruit-{i}", RECRUIT[0], RECRUIT[1]))
        assert wait_for(lambda: min(rec.counts().values()) >= 3, 90), rec.counts()
        gaps = rec.gaps()
        assert min(gaps) > INTERVAL / 2, f"a feed was fetched twice in one cycle: {min(gaps):.1f}s"

        with engine.connect() as conn:
            pollers = {r for (r,) in conn.execute(sa.text("SELECT polled_by FROM feeds"))}
            assert len(pollers) >= 2, f"one instance did all the work: {pollers}"
            dup = conn.execute(
                sa.text(
                    "SELECT feed_id, guid FROM articles GROUP BY feed_id, guid HAVING count(*) > 1"
                )
            ).all()
            assert dup == []
            assert conn.execute(sa.text("SELECT count(*) FROM articles")).scalar() == FEEDS + 60
            stories = conn.execute(
                sa.text(
                    "SELECT title, count(DISTINCT story_id) FROM articles "
                    "WHERE title LIKE '%Wagner%' GROUP BY title"
                )
            ).all()
            assert sorted(n for _, n in stories) == [1, 1], stories
            alerts = conn.execute(
                sa.text("SELECT story_id, entity, channel FROM outbox WHERE event = 'story.new'")
            ).all()
            assert len(alerts) == 2 and len(set(alerts)) == 2, alerts
        assert wait_for(lambda: len(webhook_peer.requests) >= 2, 30)
        ids = [r.header("X-Monitor-Delivery") for r in webhook_peer.requests]
        assert len(ids) == 2 and len(set(ids)) == 2, ids

        # SIGKILL one instance: its feeds go to the others once its leases run out
        victim = procs[0]
        victim_id = next(p for p in pollers if p.endswith(f":{victim.pid}"))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()

        def taken_over() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT polled_by, lease_owner FROM feeds")).all()
            return all(p != victim_id and o != victim_id for p, o in rows)

        assert wait_for(taken_over, INTERVAL + TIMEOUT + 10 + 30), "feeds left to the dead instance"
        took = time.monotonic() - killed_at
        before = rec.counts()
        assert wait_for(lambda: all(rec.counts()[p] > before[p] for p in before), 60)
        assert min(rec.gaps()) > INTERVAL / 2
        assert Counter(r.header("X-Monitor-Delivery") for r in webhook_peer.requests) == Counter(
            ids
        )
        print(f"feeds of the killed instance taken over after {took:.1f}s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        engine.dispose()
        for n in range(3):
            log = (tmp_path / f"instance-{n}.log").read_text()
            if "Traceback" in log:
                print(f"--- instance {n} ---\n{log[-4000:]}", file=sys.stderr)
    assert os.path.exists(tmp_path / "feeds.yaml")
