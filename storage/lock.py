"""The instance lock: one daemon (or poll) per SQLite database, naming the holder's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from monitor.errors import LockError


class InstanceLock:
    """An advisory ``flock`` on ``<database>.lock``; the kernel frees it if the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockError(f"another instance (pid {holder}) holds the lock {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def lock_path_for(database_url: str) -> Path | None:
    """The lock file beside a SQLite database file; None for PostgreSQL or in-memory SQLite."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return None
    path = database_url[len(prefix) :]
    if not path or path == ":memory:":
        return None
    return Path(path + ".lock")
