"""Hand the C heap's free pages back to the system (glibc's ``malloc_trim``).

glibc keeps the pages of freed memory for the process's next allocations, so the
resident size of a process that read something big once stays at that high-water mark:
the daemon after its warm start (every article of the story window read, texts and all,
to keep a small part of each), a parse worker after a big feed document.  Elsewhere
(musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

__all__ = ["release_free_memory"]


def release_free_memory() -> None:
    """Return free heap pages to the system; costs well under a millisecond per call on
    the heaps here, so call it after something big was freed, not in a tight loop."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6)
        return None
    return trim
