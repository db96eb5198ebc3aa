"""Hand the C heap's free pages back to the system (glibc's ``malloc_trim``), and keep
big blocks out of the heap (``mallopt``).

glibc keeps the pages of freed memory for the process's next allocations, so the
resident size of a process that read something big once stays at that high-water mark:
the daemon after its warm start (every article of the story window read, texts and all,
to keep a small part of each), a parse worker after a big feed document.  Elsewhere
(musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

__all__ = ["fix_mmap_threshold", "release_free_memory"]

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def release_free_memory() -> None:
    """Return free heap pages to the system; costs well under a millisecond per call on
    the heaps here, so call it after something big was freed, not in a tight loop."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> None:
    """Give every allocation of ``size`` bytes or more its own mapping, for good.

    glibc starts at 128 KiB but raises the threshold to the size of each mapped block
    freed (up to 32 MiB): after the first big feed body, bodies, pickled jobs and
    answers of up to that size come from the heap, where the small objects allocated
    between them keep their pages from going back. Fixed, a big block's pages go back
    when it is freed, at the cost of a page fault per 4 KiB on the next one.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, size)


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6)
        return None
    return function
