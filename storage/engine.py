"""Engines and migrations: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL via psycopg."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from monitor.errors import StorageError

log = logging.getLogger("storage")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SCHEMA_HEAD = "0002"  # newest migration; a test checks it against the scripts
SQLITE_BUSY_MS = 5_000  # one wait for another process's lock; write_retrying logs and retries
LOCK_RETRY_FOR = 120.0  # seconds a write keeps retrying a locked SQLite database


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    url = normalise_url(url)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False}
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"cannot use database {safe_url(url)}: {exc}") from exc
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite commits before DDL on its own; take transaction control so that a migration
    # killed half-way rolls back as a whole instead of leaving tables without a version
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    # extra pragmas, e.g. MONITOR_SQLITE_PRAGMAS="max_page_count=250000" to cap the file size
    for pragma in filter(None, os.environ.get("MONITOR_SQLITE_PRAGMAS", "").split(";")):
        name, _, value = pragma.partition("=")
        if name.strip().isidentifier() and value.strip().isalnum():
            cur.execute(f"PRAGMA {name.strip()}={value.strip()}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # "IMMEDIATE" for migrations: two processes starting on a new file must not both
    # read "no schema" and then race to create it
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}")


T = TypeVar("T")


_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def _writer_lock(engine: Engine) -> threading.RLock | contextlib.nullcontext[None]:
    """SQLite has one writer: threads of this process take turns here, woken at once,
    instead of in SQLite's busy handler, which sleeps in steps of up to 100 ms."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    return _WRITERS.setdefault(engine, threading.RLock())


def write_retrying(write: Callable[[], T], engine: Engine) -> T:
    """Run a write; while another process holds the SQLite lock, say so and try again."""
    started = time.monotonic()
    while True:
        try:
            with _writer_lock(engine):
                return write()
        except OperationalError as exc:
            waited = time.monotonic() - started
            if "locked" not in str(exc.orig) or waited > LOCK_RETRY_FOR:
                raise
            log.warning(
                "database_locked by another process: waited %.0fs, retrying (up to %.0fs)",
                waited + SQLITE_BUSY_MS / 1000,
                LOCK_RETRY_FOR,
            )
            time.sleep(0.5)


def insert_ignoring(conn: Connection, table: Table, keys: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)


def error_line(exc: BaseException) -> str:
    """The first line of a (database driver's) error, for one-line log messages."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used to build an error message
        return "<invalid database url>"


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (run at every start-up; a no-op when current).

    A current schema is recognised without importing Alembic, which keeps read commands quick.
    """
    if current_revision(engine) == SCHEMA_HEAD:
        return
    logging.getLogger("alembic").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    from alembic import command

    def upgrade() -> None:
        with (
            engine.connect() as plain,
            plain.execution_options(sqlite_begin="IMMEDIATE").begin() as tx,
        ):
            conn = tx.connection
            if conn.dialect.name == "postgresql":
                # concurrent start-ups on a new database migrate one at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(7105323)"))
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    try:
        write_retrying(upgrade, engine)  # another process may hold the lock (or be migrating)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate database {safe_url(str(engine.url))}: {exc}") from exc


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
