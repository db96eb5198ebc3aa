"""Running instances: who shares the database, with which config, and who is gone.

Each daemon writes a heartbeat row naming its config hash; the others read it to notice
that they run different feeds.yaml files (``config_mismatch``). Instance ids are
``host:pid``, so leases held by a dead process on this host can be freed at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update

from storage.engine import insert_ignoring, write_retrying
from storage.tables import instances


def instance_id() -> str:
    """This process as leases and ``polled_by`` name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_here(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class InstanceRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def heartbeat(self, owner: str, config_hash: str, now: datetime) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    insert_ignoring(conn, instances, ["id"]),
                    [
                        {
                            "id": owner,
                            "config_hash": config_hash,
                            "started_at": now,
                            "heartbeat": now,
                        }
                    ],
                )
                conn.execute(
                    update(instances)
                    .where(instances.c.id == owner)
                    .values(config_hash=config_hash, heartbeat=now)
                )

        write_retrying(write, self.engine)

    def live(self, now: datetime, stale_after: timedelta) -> dict[str, str]:
        """Instance id -> config hash of every instance with a recent heartbeat."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(instances.c.id, instances.c.config_hash).where(
                    instances.c.heartbeat >= now - stale_after
                )
            )
            return {i: h for i, h in rows}

    def leave(self, owners: Iterable[str]) -> None:
        ids = list(owners)
        if not ids:
            return

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(instances).where(instances.c.id.in_(ids)))

        write_retrying(write, self.engine)

    def forget_stale(self, now: datetime, stale_after: timedelta) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(instances).where(instances.c.heartbeat < now - stale_after))

        write_retrying(write, self.engine)
