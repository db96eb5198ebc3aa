"""What a parse worker runs, in a module of its own so that workers stay small.

A worker (see :mod:`monitor.workers`) is a fresh interpreter running :func:`serve`; it
imports what unpickling its jobs needs. The job living in ``monitor.pipeline`` would
make every worker import the whole daemon (SQLAlchemy, storage, httpx: ~40 MB a
worker); a worker imports only parsing and normalising, at its first job.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.errors import ParseError
from monitor.heap import fix_mmap_threshold, release_free_memory

if TYPE_CHECKING:
    from monitor.normalize import ProcessedFeed

__all__ = ["parse_with_limit", "run_limited", "serve"]

T = TypeVar("T")

HARD_LIMIT_FACTOR = 1.5  # x the job's limit: a worker still busy then is ended
BIG_ANSWER = 64 * 1024  # bytes: after making one, the worker's free heap goes back
# resident bytes past which a worker retires after its answer (the pool starts a fresh one):
# about twice what one holds after the corpus's biggest documents
MAX_WORKER_RSS = 48 * 2**20
KEEP, RETIRE = b"K", b"R"  # the byte before each answer: does the worker go on


def parse_with_limit(
    limit: float, feed_url: str, content: bytes, kwargs: dict[str, Any]
) -> ProcessedFeed:
    """Run in a pool worker: parse, but stop after ``limit`` seconds (see :func:`run_limited`)."""
    from monitor.normalize import process_document  # here: imported by the first job

    return run_limited(limit, process_document, feed_url, content, **kwargs)


def run_limited(limit: float, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a pool worker, stopped after ``limit`` seconds.

    The clock starts when the worker picks the job up (time in the queue does not count).
    An alarm interrupts a runaway parse with ParseError, freeing the worker for the next
    feed. The alarm only runs between bytecodes, so a job stuck inside C code (one huge
    regular-expression match, say) would hold the worker, and the cycle waiting for it,
    for ever: past ``HARD_LIMIT_FACTOR`` x ``limit``, faulthandler's watchdog thread,
    which needs no GIL, writes the job's stack to stderr and ends the worker. The pool
    reports that job as failed (WorkerDied) and starts a new worker for the next one.
    """

    def expired(signum: int, frame: object) -> None:
        raise ParseError(f"parsing took longer than {limit:.0f}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    faulthandler.dump_traceback_later(limit * HARD_LIMIT_FACTOR, exit=True)
    try:
        return fn(*args, **kwargs)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def serve() -> None:
    """A worker's main loop (``monitor.workers``): run each job read from stdin, answer on
    the pipe whose number is ``sys.argv[1]``; return at end-of-file (the pool closed it,
    or the daemon died)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    fix_mmap_threshold()  # documents and answers of 128 KiB and more leave no holes
    jobs = sys.stdin.buffer
    with open(int(sys.argv[1]), "wb") as answers:
        while True:
            try:
                answer = _run(pickle.load(jobs))
            except EOFError:
                return
            # the job and its result are garbage now
            if len(answer) >= BIG_ANSWER:  # parsing it grew the heap: do not keep that
                release_free_memory()
            retire = _past_cap(len(answer))
            answers.write(RETIRE if retire else KEEP)
            answers.write(answer)
            answers.flush()
            if retire:
                return


def _past_cap(answer_size: int) -> bool:
    """Whether this worker, its answer aside, holds more than ``MAX_WORKER_RSS`` even
    with its free heap given back."""
    if resident_bytes() - answer_size <= MAX_WORKER_RSS:
        return False
    release_free_memory()
    return resident_bytes() - answer_size > MAX_WORKER_RSS


def resident_bytes() -> int:
    """This process's resident size (0 where /proc is missing: never retire).

    A worker settles at ~25 MB, but a big document leaves its heap fragmented: the
    parser's few long-lived objects (caches, interned names) pin pages that are
    otherwise free, and a 10 MB feed left one at 51 MB, for as long as it lived. A
    fresh worker costs ~0.07 s of CPU, so one past ``MAX_WORKER_RSS`` is replaced, as
    Celery's ``worker_max_memory_per_child`` does.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run(job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> bytes:
    fn, args, kwargs = job
    try:
        return _answer(True, fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - the job's error goes to the caller
        return _answer(False, exc)


def _answer(ok: bool, value: object) -> bytes:
    """The pickled answer; an error that would not unpickle in the daemon is sent as text."""
    try:
        data = pickle.dumps((ok, value), pickle.HIGHEST_PROTOCOL)
        if not ok:
            pickle.loads(data)
    except Exception as exc:  # noqa: BLE001
        error = value if not ok else exc
        return pickle.dumps((False, ParseError(f"internal error: {error!r}")))
    return data
