"""Jobs for the parse-pool tests, in a module of their own: a worker is a fresh
interpreter that imports a job's function by its module path (the project root is on
its PYTHONPATH), and this one costs it nothing more to import."""

from __future__ import annotations

import os

_kept: list[bytes] = []  # lives as long as the worker does


def hold_memory(mib: int) -> int:
    """Keep ``mib`` MiB resident in this worker for the rest of its life; its pid.

    Filled, not merely allocated: the kernel maps a zeroed allocation's pages lazily."""
    _kept.append(b"x" * (mib * 2**20))
    return os.getpid()


def use_memory(mib: int) -> int:
    """Fill ``mib`` MiB and drop it before answering, like a big document parsed; its pid."""
    block = b"x" * (mib * 2**20)
    del block
    return os.getpid()
