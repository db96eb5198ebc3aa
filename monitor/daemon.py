"""Wiring: build the engine from config and storage, run one poll, or run the daemon.

APScheduler only ticks; the database knows what is due. Jobs: the poll tick (feeds whose
stored next poll has come), alert delivery, retention, and a watch of the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from monitor.claims import Claims, lease_for
from monitor.clustercache import ClusterCache
from monitor.config import Config, load_config
from monitor.entities import EntityMatcher
from monitor.errors import ConfigError, MonitorError, StorageError
from monitor.health import HealthServer
from monitor.heap import fix_mmap_threshold, release_free_memory
from monitor.pipeline import Engine, run_cycle, utcnow
from monitor.workers import parse_pool
from storage.engine import error_line
from storage.instances import is_dead_here
from storage.lock import InstanceLock, lock_path_for
from storage.store import Store

log = logging.getLogger("monitor.daemon")

TICK_SECONDS = 2.0
DELIVERY_SECONDS = 2.0
RETENTION_SECONDS = 3600.0
WATCH_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
INSTANCE_STALE = timedelta(seconds=60)  # no heartbeat for this long: the instance is gone
MISMATCH_LOG_EVERY = timedelta(minutes=1)
FORGET_AFTER = timedelta(days=1)  # rows of instances silent this long are deleted


def settle_heap(*, collect: bool = True) -> None:
    """Move what start-up made (the daemon's modules, config, engine) out of the cyclic
    collector's reach: it lives as long as the process, and every full collection would
    walk it again, all along a daemon's life (the command's own collector settings:
    monitor.command).

    Collected first: what is frozen is never collected, and start-up leaves garbage in
    reference cycles, the YAML parser's node tree above all (~5 MB for 2,000 feeds).
    ``collect=False`` for a process that ends after one cycle: the collection (~20 ms
    for 200 feeds, 2% of a poll of 304s) would free nothing it needs. From now on, big
    blocks get mappings of their own (:func:`monitor.heap.fix_mmap_threshold`).
    """
    if collect:
        gc.collect()
    gc.freeze()
    fix_mmap_threshold()


def build_engine(cfg: Config, store: Store, executor: Executor | None) -> Engine:
    now = utcnow()
    store.feeds.sync([(f.url, f.name) for f in cfg.feeds], now)
    free_dead_leases(store)
    if not config_mismatch(store, cfg, now):
        cancel_removed_channels(store, cfg)
    return Engine(
        config=cfg,
        store=store,
        clusterer=ClusterCache(cfg, store),
        matcher=EntityMatcher(cfg.entities),
        executor=executor,
        rng=random.Random(),
    )


def cancel_removed_channels(store: Store, cfg: Config) -> int:
    cancelled = store.outbox.cancel_channels([c.name for c in cfg.alerts])
    if cancelled:
        log.info("cancelled alerts=%d of channels no longer configured", cancelled)
    return cancelled


def free_dead_leases(store: Store) -> None:
    """Leases of processes known to be gone are freed at once instead of running out:
    on SQLite (one instance per file) every lease, on PostgreSQL those of dead processes
    of this host."""
    owners = store.feeds.lease_owners()
    if store.shared:
        owners = {o for o in owners if is_dead_here(o)}
    if owners:
        freed = store.feeds.release_owners(sorted(owners))
        freed += store.outbox.release_owners(sorted(owners))
        log.info("freed leases=%d of stopped instances %s", freed, ", ".join(sorted(owners)))


def config_mismatch(store: Store, cfg: Config, now: datetime) -> list[str]:
    """Heartbeat with this config's hash; the live instances running another config."""
    if not store.shared:
        return []
    store.instances.heartbeat(store.owner, cfg.fingerprint(), now)
    live = store.instances.live(now, INSTANCE_STALE)
    return sorted(i for i, h in live.items() if i != store.owner and h != cfg.fingerprint())


def claims_for(
    engine: Engine, *, due_only: bool, stopping: Callable[[], bool] = lambda: False
) -> Claims:
    cfg = engine.config
    return Claims(
        engine.store,
        enabled_urls(cfg),
        lease_for(cfg.settings.timeout),
        engine.clock,
        due_only=due_only,
        stopping=stopping,
    )


@contextlib.contextmanager
def instance_lock(cfg: Config) -> Iterator[None]:
    path = lock_path_for(cfg.settings.database)
    if path is None:
        yield
        return
    with InstanceLock(path):
        yield


def enabled_urls(cfg: Config) -> list[str]:
    return [f.url for f in cfg.feeds if f.enabled]


async def poll_once(cfg: Config, *, deliver_timeout: float) -> str:
    """`monitor poll`: every enabled feed once (ignoring schedules), then deliver due alerts."""
    with instance_lock(cfg):
        store = Store.open(cfg.settings.database)
        executor = parse_pool()
        try:
            engine = build_engine(cfg, store, executor)
            settle_heap(collect=False)
            report = await run_cycle(engine, claims_for(engine, due_only=False))
            delivered = await deliver_for(engine, timeout=deliver_timeout)
        finally:
            if executor is not None:
                executor.shutdown(cancel_futures=True)
            store.close()
    st = report.stats
    return (
        f"polled {report.polled} feeds in {report.seconds:.1f}s: {report.failed} failed, "
        f"{report.not_modified} not modified; {st.new} new articles, {st.duplicates} "
        f"duplicates, {st.updated} updated; {st.alerts} alerts; {delivered}"
    )


async def deliver_for(engine: Engine, *, timeout: float) -> str:
    from monitor.delivery import deliver_pending

    try:
        return await asyncio.wait_for(deliver_pending(engine), timeout)
    except TimeoutError:
        return f"delivery still running after {timeout:.0f}s; the rest stays in the outbox"


async def send_test_alert(cfg: Config, channel: str) -> tuple[bool, str]:
    from monitor.delivery import test_channel

    return await test_channel(cfg, channel)


class Daemon:
    """The running service: ticks, reloads, and a clean stop on SIGTERM/SIGINT."""

    def __init__(self, cfg: Config, store: Store, executor: Executor | None) -> None:
        self.engine = build_engine(cfg, store, executor)
        self.stop = asyncio.Event()
        self.last_tick: datetime | None = None
        self.started_at = utcnow()
        self.health: dict[str, int] = {}
        self.delivering = False
        self._cycle_lock = asyncio.Lock()
        self._config_stamp = _stamp(cfg.path)
        self.mismatched: list[str] = []
        self._mismatch_logged: datetime | None = None

    async def tick(self) -> None:
        """Poll the feeds whose stored next poll has come."""
        self.last_tick = utcnow()
        if self._cycle_lock.locked() or self.stop.is_set():
            return
        async with self._cycle_lock:
            try:
                claims = claims_for(self.engine, due_only=True, stopping=self.stop.is_set)
                report = await run_cycle(self.engine, claims)
                if report.polled:
                    # the cycle's documents, answers and rows are garbage now: a daemon
                    # between cycles holds only what it keeps
                    release_free_memory()
                    log.info(
                        "cycle feeds=%d failed=%d new=%d alerts=%d seconds=%.1f",
                        report.polled,
                        report.failed,
                        report.stats.new,
                        report.stats.alerts,
                        report.seconds,
                    )
            except (StorageError, SQLAlchemyError) as exc:
                log.error("cycle_failed storage error=%r (will retry)", error_line(exc))
                self._rewarm()
            except Exception as exc:  # noqa: BLE001 - keep the daemon alive, loudly
                log.exception("cycle_failed error=%r", exc)
                self._rewarm()

    def _rewarm(self) -> None:
        """After a failed write the clusterer may hold articles that were never stored:
        start again from the database at the next use."""
        self.engine.clusterer = ClusterCache(self.engine.config, self.engine.store)

    async def coordinate(self) -> None:
        """Heartbeat; while other live instances run another config, say so every minute."""
        now = utcnow()
        try:
            others = await asyncio.to_thread(
                config_mismatch, self.engine.store, self.engine.config, now
            )
        except SQLAlchemyError as exc:
            log.error("heartbeat_failed storage error=%r (will retry)", error_line(exc))
            return
        self.mismatched = others
        with contextlib.suppress(SQLAlchemyError):
            await asyncio.to_thread(self.engine.store.instances.forget_stale, now, FORGET_AFTER)
        if others and (
            self._mismatch_logged is None or now - self._mismatch_logged >= MISMATCH_LOG_EVERY
        ):
            self._mismatch_logged = now
            log.warning(
                "config_mismatch instances=%s run another feeds.yaml (config %s here); "
                "each claims only the feeds and channels of its own config",
                ",".join(others),
                self.engine.config.fingerprint()[:12],
            )
        elif not others:
            self._mismatch_logged = None

    async def deliver(self) -> None:
        from monitor.delivery import deliver_pending, refresh_health

        if self.stop.is_set():
            return
        self.delivering = True
        try:
            await deliver_pending(self.engine)
            if self.engine.config.settings.http is not None:
                await refresh_health(self)
        except SQLAlchemyError as exc:
            log.error("delivery_deferred storage error=%r (will retry)", error_line(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("delivery_failed error=%r", exc)
        finally:
            self.delivering = False

    @property
    def busy(self) -> bool:
        return self._cycle_lock.locked() or self.delivering

    async def retention(self) -> None:
        keep = self.engine.config.settings.retention
        if keep is None:
            return
        try:
            n = await asyncio.to_thread(self.engine.store.stories.prune, utcnow() - keep)
            if n:
                log.info("pruned stories=%d", n)
        except Exception as exc:  # noqa: BLE001
            log.error("retention_failed error=%r", str(exc))

    def watch_config(self) -> None:
        stamp = _stamp(self.engine.config.path)
        if stamp != self._config_stamp:
            self._config_stamp = stamp
            self.reload("file changed")

    def reload(self, why: str) -> None:
        old = self.engine.config
        try:
            cfg = load_config(old.path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload_rejected %s (keeping the running config)", problem)
            return
        if cfg.fingerprint() == old.fingerprint():
            return
        s_old, s_new = old.settings, cfg.settings
        if s_new.database != s_old.database or s_new.http != s_old.http:
            log.warning(
                "reload: changes to settings.database/http need a restart "
                "(restart required; not applied)"
            )
            cfg = cfg.with_settings(database=s_old.database, http=s_old.http)
        store = self.engine.store
        store.feeds.sync([(f.url, f.name) for f in cfg.feeds], utcnow())
        # another instance may still deliver a channel this config dropped: leave its
        # alerts alone until every instance runs the same config
        cancelled = (
            0 if config_mismatch(store, cfg, utcnow()) else cancel_removed_channels(store, cfg)
        )
        self.engine.matcher = EntityMatcher(cfg.entities)
        self.engine.config = cfg
        log.info(
            "reloaded (%s): feeds=%d entities=%d channels=%d cancelled_alerts=%d",
            why,
            len(cfg.feeds),
            len(cfg.entities),
            len(cfg.alerts),
            cancelled,
        )


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


async def run_daemon(cfg: Config) -> None:
    """`monitor run`: until SIGTERM/SIGINT, which finish the work in hand and exit 0."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    with instance_lock(cfg):
        store = Store.open(cfg.settings.database)
        executor = parse_pool()
        daemon = Daemon(cfg, store, executor)
        settle_heap()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, daemon.stop.set)
        loop.add_signal_handler(signal.SIGINT, daemon.stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: daemon.reload("SIGHUP"))
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        scheduler.add_job(
            daemon.tick,
            "interval",
            seconds=TICK_SECONDS,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            id="poll",
        )
        scheduler.add_job(
            daemon.deliver,
            "interval",
            seconds=DELIVERY_SECONDS,
            max_instances=1,
            coalesce=True,
            id="deliver",
            next_run_time=now + timedelta(seconds=1),
        )
        scheduler.add_job(
            daemon.retention,
            "interval",
            seconds=RETENTION_SECONDS,
            max_instances=1,
            coalesce=True,
            id="retention",
            next_run_time=now,
        )
        if store.shared:
            scheduler.add_job(
                daemon.coordinate,
                "interval",
                seconds=HEARTBEAT_SECONDS,
                max_instances=1,
                coalesce=True,
                id="coordinate",
                next_run_time=now,
            )
        scheduler.add_job(
            daemon.watch_config,
            "interval",
            seconds=WATCH_SECONDS,
            max_instances=1,
            coalesce=True,
            id="watch",
        )
        health = await _start_health(daemon)
        scheduler.start()
        log.info(
            "started pid=%d feeds=%d database=%s",
            os.getpid(),
            len(cfg.feeds),
            _safe_db(cfg.settings.database),
        )
        try:
            await daemon.stop.wait()
            log.info("stopping: finishing the work in hand")
            # pausing starts no new job; shutting down would cancel the running ones
            scheduler.pause()
            deadline = cfg.settings.timeout.total_seconds() + 3
            started = time.monotonic()
            while daemon.busy and time.monotonic() - started < deadline:
                await asyncio.sleep(0.1)
            scheduler.shutdown(wait=False)
        finally:
            if health is not None:
                await health.close()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(SQLAlchemyError):
                store.instances.leave([store.owner])
            store.close()
        log.info("stopped")


async def _start_health(daemon: Daemon) -> HealthServer | None:
    http = daemon.engine.config.settings.http
    if http is None:
        return None
    from monitor.delivery import health_status
    from monitor.health import start_health_server

    try:
        return await start_health_server(http.host, http.port, lambda: health_status(daemon))
    except OSError as exc:
        raise MonitorError(f"cannot serve settings.http on {http.host}:{http.port}: {exc}") from exc


def _safe_db(url: str) -> str:
    from storage.engine import safe_url

    return safe_url(url)
