"""The parse pool's job, in a module of its own so that pool workers stay small.

A worker imports what unpickling its job needs. The job living in ``monitor.pipeline``
made every worker import the whole daemon (SQLAlchemy, storage, httpx: ~40 MB a
worker); a worker now imports only parsing and normalising, at its first job.

The forkserver imports this module (``monitor.workers.PRELOAD``) and nothing more: a
module it preloads is resident in the forkserver *and* in every worker forked from it,
so preloading the parser would add its ~10 MB to the forkserver without making a worker
smaller.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from monitor.errors import ParseError
from monitor.heap import release_free_memory

if TYPE_CHECKING:
    from monitor.normalize import ProcessedFeed

__all__ = ["parse_with_limit"]

MAIN_ENV = "MONITOR_POOL_SKIP_MAIN"  # set by monitor.workers while it starts the forkserver
BIG_DOCUMENT = 64 * 1024  # bytes: after parsing one, the worker's free heap goes back


def parse_with_limit(
    limit: float, feed_url: str, content: bytes, kwargs: dict[str, Any]
) -> ProcessedFeed:
    """Run in a pool worker: parse, but stop after ``limit`` seconds of the worker's own time.

    The clock starts when the worker picks the job up (time in the queue does not count)
    and the alarm really interrupts a runaway parse, freeing the worker for the next feed.
    """
    from monitor.normalize import process_document  # here: the forkserver does not need it

    def expired(signum: int, frame: object) -> None:
        raise ParseError(f"parsing took longer than {limit:.0f}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return process_document(feed_url, content, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if len(content) >= BIG_DOCUMENT:  # parsing it grew the heap: do not keep that
            release_free_memory()


def _skip_parent_main() -> None:
    """In the forkserver: take the parent's main script as loaded, without running it.

    A forked worker runs the parent's main script unless ``__main__`` already is that
    file, and the ``monitor`` console script would import the whole CLI into every
    worker.  The pool's jobs live here, so nothing in the script is needed.  Only a
    process without a main file of its own (the forkserver runs ``python -c``) changes.
    """
    path = os.environ.pop(MAIN_ENV, None)
    main = sys.modules.get("__main__")
    if path and main is not None and getattr(main, "__file__", None) is None:
        main.__file__ = path


_skip_parent_main()
