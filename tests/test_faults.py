"""Faults under a running `monitor run`: crashes, a locked SQLite file, a PostgreSQL restart,
writes refused (disk full, read-only PostgreSQL).

Every test drives the daemon as a subprocess against feeds served by ``tests.feedserver``
(a :class:`Newsroom` of live feeds the test publishes items to) and a webhook receiver
(``tests.alertpeers``), then checks the same invariants (:func:`assert_consistent`):

* every published item is stored exactly once: the stored (feed, url) pairs, duplicates
  kept, equal the published ones;
* every article is in exactly one story;
* every outbox alert ends ``sent`` and reached the receiver at least once under its own
  id (``X-Monitor-Delivery``), and no (channel, entity, story) alerted twice.

PostgreSQL faults use a throwaway server the test starts itself (initdb as the
``postgres`` user in a temporary directory that user owns, its own free port); the
machine's shared server is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import re
import resource
import shutil
import sqlite3
import string
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import alertpeers, hostile
from tests.alertpeers import WebhookPeer, free_port
from tests.feedbuild import Item, LiveFeed
from tests.feedserver import FeedServer, RecordedRequest, Reply

pytestmark = pytest.mark.timeout(300)

webhook_peer = alertpeers.webhook_peer
ENTITY = "Wagner Group"
SETTLE = 60.0  # seconds a daemon gets to reach an expected state (it polls every ~2 s)


# ------------------------------------------------------------------ the newsroom


class Newsroom:
    """Live feeds on one server; ``publish`` adds items, ``expected`` is what must be stored.

    Titles are made of random pseudo-words, so no two items are alike to the clusterer;
    every ``alert_every``-th item names the tracked entity, so its story raises an alert.
    """

    def __init__(
        self,
        server: FeedServer,
        names: tuple[str, ...] = ("Alpha", "Bravo", "Delta"),
        alert_every: int = 3,
    ) -> None:
        self.server = server
        self.alert_every = alert_every
        self.rng = random.Random(6)
        self.epoch = datetime.now(UTC) - timedelta(hours=1)
        self.feeds = {name: LiveFeed(name) for name in names}
        self.paths = {name: f"/news/{name.lower()}" for name in names}
        self.count = 0
        for name, feed in self.feeds.items():
            server.route(self.paths[name], handler=feed.handler)

    def url(self, name: str) -> str:
        return self.server.url(self.paths[name])

    def config_feeds(self) -> list[dict[str, Any]]:
        return [{"url": self.url(n), "name": n, "interval": "1s"} for n in self.feeds]

    def _word(self) -> str:
        return "".join(self.rng.choice(string.ascii_lowercase) for _ in range(9))

    def publish(self, per_feed: int) -> None:
        for name, feed in self.feeds.items():
            for _ in range(per_feed):
                self.count += 1
                words = " ".join(self._word() for _ in range(6))
                lead = "Wagner" if self.count % self.alert_every == 0 else self._word().title()
                feed.items.append(
                    Item(
                        guid=f"{name}-{self.count}",
                        title=f"{lead} {words}",
                        summary=" ".join(self._word() for _ in range(20)),
                        link=f"https://{name.lower()}.example/news/{self.count}",
                        published=self.epoch + timedelta(seconds=self.count),
                    )
                )

    def expected(self) -> set[tuple[str, str]]:
        return {(name, str(it.link)) for name, f in self.feeds.items() for it in f.items}


def faults_config(
    folder: Path,
    room: Newsroom,
    peer: WebhookPeer,
    *,
    database: str = "sqlite:///monitor.db",
    extra_feeds: tuple[dict[str, Any], ...] = (),
) -> Path:
    return hostile.write_config(
        folder / "feeds.yaml",
        settings={
            "database": database,
            "timeout": "5s",
            "per_host": 8,
            "poll_interval": "1s",
            "min_interval": "1s",
            "max_interval": "2s",
            "alert_backlog": True,
            "retention": "never",
        },
        feeds=[*room.config_feeds(), *extra_feeds],
        entities=[{"name": ENTITY, "aliases": ["Wagner"]}],
        alerts=[{"name": "hook", "type": "webhook", "url": peer.url, "timeout": "30s"}],
    )


# ------------------------------------------------------------------ observations


def stored(config: Path) -> list[tuple[str, str]]:
    return hostile.article_pairs(config)


def outbox(config: Path) -> list[dict[str, Any]]:
    return list(hostile.monitor_json(config, "alerts"))


def has_stored(config: Path, expected: set[tuple[str, str]]) -> Callable[[], bool]:
    return lambda: expected <= set(stored(config))


def all_sent(config: Path) -> Callable[[], bool]:
    def check() -> bool:
        rows = outbox(config)
        return bool(rows) and all(a["state"] == "sent" for a in rows)

    return check


def delivered(peer: WebhookPeer) -> Counter[str]:
    return Counter(r.header("X-Monitor-Delivery") or "" for r in peer.requests)


def assert_no_duplicates(pairs: list[tuple[str, str]]) -> None:
    twice = [pair for pair, n in Counter(pairs).items() if n > 1]
    assert not twice, f"stored more than once: {twice[:5]}"


def assert_consistent(config: Path, room: Newsroom, peer: WebhookPeer) -> list[dict[str, Any]]:
    """The invariants of the module docstring; returns the outbox."""
    pairs = stored(config)
    assert_no_duplicates(pairs)
    assert set(pairs) == room.expected()
    stories = hostile.monitor_json(config, "stories", "--all")
    article_ids = [a["id"] for s in stories for a in s["articles"]]
    assert len(article_ids) == len(set(article_ids)) == len(pairs)
    rows = outbox(config)
    assert rows, "the scenario should have raised alerts"
    assert [a for a in rows if a["state"] != "sent"] == []
    got = delivered(peer)
    assert [a["id"] for a in rows if got[a["id"]] == 0] == []
    fired = Counter((a["channel"], a["entity"], a["story_id"]) for a in rows)
    assert [k for k, n in fired.items() if n > 1] == []
    return rows


@contextlib.contextmanager
def daemon(
    config: Path, *, wait_started: bool = True, **kwargs: Any
) -> Iterator[hostile.MonitorDaemon]:
    """A running daemon; whatever the test does, none is left behind.

    By default it is yielded once it logged ``started`` (schema migrated, feeds synced), so
    the test's own CLI reads never race its start-up writes on a fresh database (that race
    is :func:`test_sqlite_locked_at_daemon_start_waits`'s business).
    """
    proc = hostile.MonitorDaemon(config, **kwargs)
    try:
        if wait_started:
            settle(lambda: "started pid=" in proc.log or not proc.alive(), "start-up", proc)
            assert proc.alive(), proc.log[-3000:]
        yield proc
    finally:
        proc.ensure_gone()


def settle(check: Callable[[], object], what: str, proc: hostile.MonitorDaemon) -> None:
    if not hostile.wait_until(check, SETTLE, step=0.5):
        raise AssertionError(
            f"{what} not reached in {SETTLE:.0f}s; daemon log:\n{proc.log[-4000:]}"
        )


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


# ------------------------------------------------------------------ SIGKILL


class Gate:
    """A feed that answers after ``delay`` seconds and tells when it has answered a request
    that arrived after the last ``arm`` (a killed daemon's request may still be held)."""

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.delay = 0.0
        self.armed_at = time.monotonic()
        self.answered = threading.Event()

    def arm(self, delay: float) -> None:
        self.delay = delay
        self.armed_at = time.monotonic()
        self.answered.clear()

    def handler(self, request: RecordedRequest) -> Reply:
        arrived, delay = time.monotonic(), self.delay
        if delay:
            time.sleep(delay)
        reply = self.feed.handler(request)
        if arrived >= self.armed_at:
            self.answered.set()
        return reply


def test_sigkill_mid_cycle_loses_and_duplicates_nothing(server, tmp_path, webhook_peer):
    """Kill -9 at several instants of a cycle: while a fetch is in flight, and just after
    the cycle's last answer (parsing, clustering or writing the tick's transaction)."""
    room = Newsroom(server, alert_every=10)
    gate_feed = LiveFeed("Gate", [Item("g-0", "Gate opens", link="https://gate.example/0")])
    gate = Gate(gate_feed)
    server.route("/news/gate", handler=gate.handler)
    gate_entry = {"url": server.url("/news/gate"), "name": "Gate", "interval": "1s"}
    config = faults_config(tmp_path, room, webhook_peer, extra_feeds=(gate_entry,))
    room.publish(5)
    with daemon(config) as first:
        settle(has_stored(config, room.expected()), "first cycle stored", first)
        before = stored(config)
        # in flight: the gate holds its answer, every other feed of the cycle is fetched
        room.publish(15)
        gate.arm(3.0)
        settle(lambda: server.in_flight("/news/gate") > 0, "cycle in flight", first)
        first.kill()
    after = stored(config)
    assert_no_duplicates(after)
    assert set(before) <= set(after)
    # after the cycle's last answer, at several delays: the tick's work is under way
    for delay in (0.0, 0.15, 0.3, 1.0):
        room.publish(15)
        gate.arm(0.5)
        with daemon(config) as crashing:
            assert gate.answered.wait(SETTLE), crashing.log[-3000:]
            time.sleep(delay)
            crashing.kill()
        now = stored(config)
        assert_no_duplicates(now)
        assert set(after) <= set(now), "an article stored before a crash is gone"
        after = now
    gate.arm(0.0)
    with daemon(config) as last:
        settle(has_stored(config, room.expected()), "every item stored after restart", last)
        settle(all_sent(config), "every alert sent after restart", last)
        assert last.stop() == 0
    room.feeds["Gate"] = gate_feed
    assert_consistent(config, room, webhook_peer)


def test_sigkill_mid_delivery_redelivers_with_the_same_id(server, tmp_path, webhook_peer):
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer)
    room.publish(3)
    webhook_peer.delay = 20.0  # the receiver holds its answer: the send is in progress
    with daemon(config) as first:
        settle(lambda: len(webhook_peer.requests) >= 1, "a delivery in flight", first)
        first.kill()
    [interrupted] = webhook_peer.requests
    interrupted_id = interrupted.header("X-Monitor-Delivery")
    pending = {a["id"]: a for a in outbox(config)}
    assert pending[interrupted_id]["state"] == "pending"
    webhook_peer.delay = 0.0
    with daemon(config) as second:
        settle(all_sent(config), "every alert sent after restart", second)
        assert second.stop() == 0
    rows = assert_consistent(config, room, webhook_peer)
    assert {a["id"] for a in rows} >= set(pending)  # the same alerts, the same ids
    assert delivered(webhook_peer)[interrupted_id] >= 2  # sent again after the crash
    bodies = [
        r.json() for r in webhook_peer.requests if r.header("X-Monitor-Delivery") == interrupted_id
    ]
    assert {b["id"] for b in bodies} == {interrupted_id}
    assert {b["story"]["id"] for b in bodies} == {pending[interrupted_id]["story_id"]}


def test_sigterm_mid_cycle_finishes_the_cycle(server, tmp_path, webhook_peer):
    """Not a crash: the contract says SIGTERM finishes the work in hand, then exits 0."""
    room = Newsroom(server)
    gate = Gate(LiveFeed("Gate", [Item("g-0", "Gate opens", link="https://gate.example/0")]))
    server.route("/news/gate", handler=gate.handler)
    gate_entry = {"url": server.url("/news/gate"), "name": "Gate", "interval": "1s"}
    config = faults_config(tmp_path, room, webhook_peer, extra_feeds=(gate_entry,))
    room.publish(3)
    with daemon(config) as proc:
        settle(has_stored(config, room.expected()), "first cycle stored", proc)
        room.publish(5)
        gate.arm(2.0)  # well inside the 5 s timeout
        settle(lambda: server.in_flight("/news/gate") > 0, "cycle in flight", proc)
        assert proc.stop() == 0
    assert "CancelledError" not in proc.log, proc.log[-3000:]
    assert room.expected() <= set(stored(config)), "the cycle in hand was dropped"


def test_sigterm_mid_delivery_finishes_the_send(server, tmp_path, webhook_peer):
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer)
    room.publish(3)
    webhook_peer.delay = 2.0  # the receiver answers slowly, well inside the channel timeout
    with daemon(config) as proc:
        settle(lambda: len(webhook_peer.requests) >= 1, "a delivery in flight", proc)
        assert proc.stop() == 0
    first = webhook_peer.requests[0].header("X-Monitor-Delivery")
    state = {a["id"]: a["state"] for a in outbox(config)}
    assert state[first] == "sent", "a send that reached the receiver was not recorded"


# ------------------------------------------------------------------ SQLite locked


@dataclass
class LockRun:
    config: Path
    room: Newsroom
    peer: WebhookPeer
    log: str
    exit_code: int
    locked: datetime  # when the other process took the lock
    released: datetime  # ... and let it go
    in_flight: str  # the alert whose delivery was under way when the lock was taken


@dataclass
class HeldLock:
    """Another connection (as another process would) holding ``BEGIN EXCLUSIVE``."""

    thread: threading.Thread
    taken: threading.Event
    locked: datetime | None = None
    released: datetime | None = None


def hold_sqlite_lock(database: Path, seconds: float) -> HeldLock:
    """Take the database's write lock on a thread and keep it ``seconds``."""

    def hold() -> None:
        conn = sqlite3.connect(database, timeout=30, isolation_level=None)
        try:
            # as the product's own connections do (a no-op on its databases, already WAL):
            # a new file is then locked the way a monitor process migrating it locks it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN EXCLUSIVE")
            lock.locked = datetime.now(UTC)
            lock.taken.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
            lock.released = datetime.now(UTC)
        finally:
            conn.close()

    lock = HeldLock(threading.Thread(target=hold, daemon=True), threading.Event())
    lock.thread.start()
    assert lock.taken.wait(30), "could not take the lock"
    return lock


@pytest.fixture(scope="module")
def sqlite_lock_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockRun]:
    """The daemon runs; another process's connection holds ``BEGIN EXCLUSIVE`` for 10 s,
    taken while an alert's delivery is under way (the receiver answers slowly) and while
    new items are published. Run once; the tests below read what happened."""
    folder = tmp_path_factory.mktemp("sqlite-lock")
    with FeedServer(root=None) as srv, WebhookPeer() as peer:
        room = Newsroom(srv)
        config = faults_config(folder, room, peer)
        room.publish(5)
        with daemon(config) as proc:
            settle(has_stored(config, room.expected()), "first cycle stored", proc)
            settle(all_sent(config), "first alerts sent", proc)
            peer.delay = 1.5
            seen = len(peer.requests)
            room.publish(5)
            settle(lambda: len(peer.requests) > seen, "a delivery under way", proc)
            in_flight = peer.requests[seen].header("X-Monitor-Delivery") or ""
            lock = hold_sqlite_lock(folder / "monitor.db", 10.0)
            room.publish(10)
            lock.thread.join(40)
            assert lock.locked is not None and lock.released is not None
            peer.delay = 0.0
            settle(has_stored(config, room.expected()), "items published during the lock", proc)
            settle(all_sent(config), "every alert sent", proc)
            code = proc.stop()
        yield LockRun(config, room, peer, proc.log, code, lock.locked, lock.released, in_flight)


def test_sqlite_locked_for_10s_the_cycle_waits_and_nothing_is_lost(
    sqlite_lock_run: LockRun,
) -> None:
    run = sqlite_lock_run
    assert run.exit_code == 0, run.log[-3000:]
    assert run.released - run.locked >= timedelta(seconds=10)
    assert_consistent(run.config, run.room, run.peer)
    assert "cycle_failed" not in run.log, run.log[-5000:]  # it waited, it did not give up


def test_sqlite_locked_for_10s_is_logged_clearly(sqlite_lock_run: LockRun) -> None:
    """While the daemon waits for the lock, a line says so (not only once it got through)."""
    run = sqlite_lock_run
    saying_so = re.compile(r"locked|busy", re.IGNORECASE)  # e.g. "database_locked ..."
    during = [
        line
        for line in run.log.splitlines()
        if (at := _log_time(line)) is not None
        and run.locked <= at <= run.released + timedelta(seconds=1)
        and saying_so.search(line)
    ]
    assert during, run.log[-4000:]


def test_sqlite_locked_for_10s_delivery_waits_too(sqlite_lock_run: LockRun) -> None:
    """The delivery under way when the lock was taken records its success once the lock
    is gone: nothing is logged as a bug and no alert reaches the receiver twice (a lock is
    not a crash)."""
    run = sqlite_lock_run
    assert "Traceback" not in run.log, run.log[-5000:]
    twice = {i: n for i, n in delivered(run.peer).items() if n > 1}
    assert not twice, f"delivered more than once: {twice} (in flight: {run.in_flight})"


@pytest.mark.parametrize("database", ["existing", "new"])
def test_sqlite_locked_at_daemon_start_waits(
    server: FeedServer, tmp_path: Path, webhook_peer: WebhookPeer, database: str
) -> None:
    """`monitor run` started while another process holds the lock for 10 s: on an existing
    database with a feed added to the config (start-up has to write the feed), or on a new
    one (start-up has to create the schema). It waits, then works."""
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer)
    room.publish(3)
    if database == "existing":
        assert hostile.run_monitor(config, "poll").returncode == 0
    late = Newsroom(server, names=("Echo",))
    late.publish(3)
    config = faults_config(tmp_path, room, webhook_peer, extra_feeds=tuple(late.config_feeds()))
    lock = hold_sqlite_lock(tmp_path / "monitor.db", 10.0)  # a new one: an empty WAL file
    with daemon(config, wait_started=False) as proc:
        lock.thread.join(40)
        assert proc.alive(), proc.log[-3000:]
        settle(has_stored(config, late.expected() | room.expected()), "every feed stored", proc)
        assert proc.stop() == 0
    assert "Traceback" not in proc.log, proc.log[-3000:]


def _log_time(line: str) -> datetime | None:
    """The timestamp the product's text logs start with (``2026-11-28T08:00:00Z``)."""
    try:
        return datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# ------------------------------------------------------------------ throwaway PostgreSQL


class ThrowawayPostgres:
    """A PostgreSQL server of our own: initdb as ``postgres`` in a temporary directory that
    user owns (initdb refuses root), on a free port, trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
        if not bins or shutil.which("runuser") is None:
            pytest.skip("PostgreSQL server binaries or runuser are not installed")
        self.bin = Path(bins[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N", "-E", "UTF8"
        )

    def _as_postgres(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, f"{tool} {args}: {res.stdout}{res.stderr}"
        return res

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def sql(self, *statements: str, database: str = "postgres") -> None:
        args = ["-h", str(self.dir), "-p", str(self.port), "-d", database, "-v", "ON_ERROR_STOP=1"]
        for s in statements:
            args += ["-c", s]
        self._as_postgres("psql", *args)

    def new_database(self) -> str:
        name = f"monitor_{os.urandom(4).hex()}"
        self.sql(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


def test_postgresql_restarted_under_the_daemon(server, tmp_path, webhook_peer, throwaway_pg):
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer, database=throwaway_pg.new_database())
    room.publish(5)
    with daemon(config) as proc:
        settle(has_stored(config, room.expected()), "first cycle stored", proc)
        down_log = len(proc.log)
        throwaway_pg.stop("fast")  # every connection of the daemon's pool dies
        room.publish(10)
        time.sleep(5)  # ticks and delivery passes fail meanwhile
        assert proc.alive(), proc.log[-3000:]
        throwaway_pg.start()
        settle(has_stored(config, room.expected()), "items published while it was down", proc)
        settle(all_sent(config), "every alert sent", proc)
        assert proc.stop() == 0
    assert_consistent(config, room, webhook_peer)
    assert "cycle_failed" in proc.log[down_log:]  # the outage was noticed and logged


# ------------------------------------------------------------------ writes refused


@dataclass(frozen=True)
class Outage:
    """How a test refuses the daemon's writes, then gives them back."""

    name: str
    start: Callable[[hostile.MonitorDaemon, Path], None]
    end: Callable[[hostile.MonitorDaemon, Path], None]


def refused_writes_scenario(
    config: Path, room: Newsroom, peer: WebhookPeer, outage: Outage
) -> hostile.MonitorDaemon:
    """Alerts wait in the outbox (receiver down); writes are refused; the receiver comes
    back and new items are published; then writes work again. Returns the stopped daemon."""
    room.publish(4)
    peer.stop()
    with daemon(config) as proc:
        settle(has_stored(config, room.expected()), "first cycle stored", proc)
        settle(lambda: any(a["attempts"] >= 1 for a in outbox(config)), "a failed delivery", proc)
        before = {a["id"]: a for a in outbox(config)}
        stored_before = set(stored(config))
        outage.start(proc, config)
        room.publish(6)
        peer.start()
        settle(lambda: len(peer.requests) >= 1, "a delivery during the outage", proc)
        time.sleep(4)  # a few ticks fail to write
        assert proc.alive(), proc.log[-3000:]
        # nothing written meanwhile, and the outbox is intact
        assert set(stored(config)) == stored_before, "writes were not refused"
        during = {a["id"]: a for a in outbox(config)}
        assert set(during) == set(before)
        assert all(a["state"] == "pending" for a in during.values())
        outage.end(proc, config)
        settle(has_stored(config, room.expected()), "items stored after the outage", proc)
        settle(all_sent(config), "every alert sent after the outage", proc)
        assert proc.stop() == 0
    rows = assert_consistent(config, room, peer)
    assert {a["id"] for a in rows} >= set(before)
    return proc


def _fsize(soft: int | None) -> Callable[[hostile.MonitorDaemon, Path], None]:
    """Set the daemon's soft file-size limit (``None``: back to its hard limit). Only the
    soft one: raising a hard limit again needs CAP_SYS_RESOURCE, which a container's root
    may lack."""

    def apply(proc: hostile.MonitorDaemon, config: Path) -> None:
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard if soft is None else soft, hard))

    return apply


def test_sqlite_disk_full_keeps_the_outbox_and_recovers(server, tmp_path, webhook_peer):
    """Disk full, as the kernel reports it: the daemon's file-size limit (RLIMIT_FSIZE,
    applied to the running process with prlimit) stops every write past 1 byte, so SQLite
    gets EFBIG / short writes ("database or disk is full", "disk I/O error")."""
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer)
    outage = Outage("fsize", _fsize(1), _fsize(None))
    proc = refused_writes_scenario(config, room, webhook_peer, outage)
    assert "full" in proc.log or "I/O error" in proc.log, proc.log[-4000:]


PAGE_LIMIT_ENV = "MONITOR_SQLITE_PRAGMAS"


def test_sqlite_max_page_count_keeps_the_outbox_and_recovers(server, tmp_path, webhook_peer):
    """The issue's own disk-full simulation: ``PRAGMA max_page_count`` at the current size.

    It is per connection, so the daemon applies it: started with
    ``MONITOR_SQLITE_PRAGMAS=max_page_count=N`` it runs every new connection with that
    pragma. A first daemon fills the outbox; a second one runs "full"; a third one, without
    the limit, recovers.
    """
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer)
    room.publish(4)
    webhook_peer.stop()
    with daemon(config) as first:
        settle(has_stored(config, room.expected()), "first cycle stored", first)
        settle(lambda: any(a["attempts"] >= 1 for a in outbox(config)), "a failed try", first)
        assert first.stop() == 0
    before = {a["id"] for a in outbox(config)}
    stored_before = set(stored(config))
    with sqlite3.connect(tmp_path / "monitor.db") as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    room.publish(6)
    webhook_peer.start()
    with daemon(config, env={PAGE_LIMIT_ENV: f"max_page_count={pages}"}) as full:
        settle(lambda: len(webhook_peer.requests) >= 1, "a delivery while full", full)
        time.sleep(4)
        assert set(stored(config)) == stored_before, "writes were not refused"
        assert {a["id"] for a in outbox(config)} == before
        assert "full" in full.log, full.log[-3000:]
        assert full.stop() == 0
    with daemon(config) as recovered:
        settle(has_stored(config, room.expected()), "items stored after the outage", recovered)
        settle(all_sent(config), "every alert sent after the outage", recovered)
        assert recovered.stop() == 0
    assert {a["id"] for a in assert_consistent(config, room, webhook_peer)} >= before


def test_postgresql_read_only_keeps_the_outbox_and_recovers(
    server, tmp_path, webhook_peer, throwaway_pg
):
    """``default_transaction_read_only`` switched on and reloaded: PostgreSQL's "disk full"."""
    room = Newsroom(server)
    config = faults_config(tmp_path, room, webhook_peer, database=throwaway_pg.new_database())

    def read_only(on: bool) -> None:
        statement = (
            "ALTER SYSTEM SET default_transaction_read_only = on"
            if on
            else "ALTER SYSTEM RESET default_transaction_read_only"
        )
        throwaway_pg.sql(statement, "SELECT pg_reload_conf()")

    outage = Outage(
        "read-only", lambda proc, cfg: read_only(True), lambda proc, cfg: read_only(False)
    )
    try:
        proc = refused_writes_scenario(config, room, webhook_peer, outage)
    finally:
        read_only(False)  # never leave the shared throwaway server read-only
    assert "read-only transaction" in proc.log, proc.log[-4000:]
