"""Opaque ids: a prefix and random bits, assigned once and never reused."""

from __future__ import annotations

import os
import threading

_ID_BYTES = 12  # 96 random bits make collisions irrelevant
_POOL_BYTES = _ID_BYTES * 341  # one ~4 KB read from the OS serves 341 ids


class _RandomPool:
    """Bytes from ``os.urandom``, read a block at a time.

    A cold poll makes two ids per new article; one ``getrandom`` call each released
    and re-took the GIL, a few thousand handovers between the clustering thread and the
    event loop for 12 bytes each.  Emptied in a forked child, which must not repeat
    its parent's ids.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._offset + n > len(self._block):
                self._block, self._offset = os.urandom(max(n, _POOL_BYTES)), 0
            start, self._offset = self._offset, self._offset + n
            return self._block[start : self._offset]

    def forget(self) -> None:
        self._block, self._offset = b"", 0


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def new_id(prefix: str) -> str:
    """Return e.g. ``s_3f9a...``: the prefix and 96 random bits in hex."""
    return f"{prefix}_{_POOL.take(_ID_BYTES).hex()}"
