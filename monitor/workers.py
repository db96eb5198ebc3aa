"""The parse worker pool: plain child processes fed through pipes, started by the first job.

Parsing is CPU work, so on 2+ cores it runs in worker processes. Each worker is a fresh
interpreter (``python -c``) that imports only :mod:`monitor.parsejob` and reads jobs
from its stdin, answering on a pipe of its own, one pickle each way.

Why not ``ProcessPoolExecutor``: with the forkserver start method (fork is unsafe in a
threaded daemon) it runs two more interpreters beside the workers, the forkserver and
multiprocessing's resource tracker, ~30 MB resident for nothing this pool needs; its
workers re-run the parent's main script (the whole CLI for the ``monitor`` command)
unless tricked out of it; and a worker killed mid-parse breaks it for good. Here a dead
worker fails only the job it held (its feed is retried next cycle) and is restarted for
the next one; a worker whose memory grew past a cap retires after its answer
(:func:`monitor.parsejob.serve`); when the daemon dies, its workers read end-of-file and
exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

from monitor.errors import ParseError
from monitor.parsejob import KEEP, RETIRE

__all__ = ["ParsePool", "WorkerDied", "parse_pool"]

log = logging.getLogger("monitor.workers")

P = ParamSpec("P")
T = TypeVar("T")

# the worker's program: monitor.parsejob answers jobs until its stdin ends
WORKER_CODE = "from monitor.parsejob import serve; serve()"
_STOP = None  # queued once per worker thread by shutdown
IDLE_EXIT_SECONDS = 30.0  # a worker without a job this long is ended
_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerDied(ParseError):
    """A worker exited (killed, out of memory, a crash in C) before answering its job."""


def parse_pool(workers: int | None = None) -> ParsePool | None:
    """Parsing is CPU work: on 2+ cores a process pool keeps it off the event loop."""
    workers = workers or os.cpu_count() or 1
    if workers < 2:
        return None
    return ParsePool(workers)


class ParsePool(Executor):
    """``workers`` worker processes, each served by a thread of ours that hands it the
    next queued job and waits for its answer (so a job goes to the first free worker).

    Nothing starts before the first ``submit``.  Jobs and their arguments must pickle by
    reference to importable functions: the workers share nothing else with us.
    """

    def __init__(self, workers: int, *, idle_exit: float = IDLE_EXIT_SECONDS) -> None:
        self._size = workers
        self._idle_exit = idle_exit
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put((future, fn, args, kwargs))
            while len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._serve, name=f"parse-worker-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is not None:
                        job[0].cancel()
            for _ in self._threads:
                self._jobs.put(_STOP)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()

    def _serve(self) -> None:
        """One worker's thread: run queued jobs on it until shutdown, then let it exit.

        A worker left without work for ``idle_exit`` seconds is ended (the next job
        starts another): between the cycles that bring new documents, a daemon at rest
        holds no parser's memory.
        """
        worker = _Worker()
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=self._idle_exit)
                except queue.Empty:
                    worker.close()
                    job = self._jobs.get()
                if job is None:  # _STOP
                    return
                future, fn, args, kwargs = job
                if future.set_running_or_notify_cancel():
                    worker.run(future, fn, args, kwargs)
        finally:
            worker.close()


class _Worker:
    """One worker process, (re)started when a job needs it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._answers: IO[bytes] | None = None

    def run(
        self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        try:
            request = pickle.dumps((fn, args, kw), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - the caller's job cannot be sent: its error
            future.set_exception(exc)
            return
        try:
            process, answers = self._ensure()
            assert process.stdin is not None
            process.stdin.write(request)
            process.stdin.flush()
            del request
            state = answers.read(1)
            if not state:
                raise EOFError("the worker exited")
            if state not in (KEEP, RETIRE):
                raise ValueError(f"an answer began with {state!r}")
            ok, value = pickle.load(answers)
        except Exception as exc:  # noqa: BLE001 - gone, or out of step: restart it
            future.set_exception(self._lost(exc))
            return
        if state == RETIRE:  # it answered and exits: the next job starts a fresh one
            log.debug("parse_worker_retired pid=%d (resident size past its cap)", process.pid)
            self.close()
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _ensure(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        if self._process is None or self._answers is None:
            self._process, self._answers = _start_worker()
        return self._process, self._answers

    def _lost(self, exc: Exception) -> WorkerDied:
        """The worker died, or its answer could not be read: stop it (a new one takes the
        next job) and say which."""
        exited = isinstance(exc, EOFError | OSError) or (
            self._process is not None and self._process.poll() is not None
        )
        code = self._stop(kill=True)
        log.warning(
            "parse_worker_lost exit_code=%s error=%r (restarted for the next job)", code, exc
        )
        if exited:
            what = f"the parse worker died while parsing (exit code {code})"
        else:
            what = f"the parse worker's answer could not be read ({exc!r})"
        return WorkerDied(f"{what}; retried next cycle")

    def close(self) -> None:
        self._stop(kill=False)

    def _stop(self, *, kill: bool) -> int | None:
        process, answers = self._process, self._answers
        self._process = self._answers = None
        if process is None:
            return None
        if kill:
            process.kill()
        for stream in (process.stdin, answers):  # its stdin at end-of-file: the worker exits
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in a job longer than its own alarm
            process.kill()
            return process.wait()


def _start_worker() -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """A worker reading jobs on its stdin and answering on a pipe of its own (its number
    is the worker's argument), so that anything a parser prints cannot corrupt answers."""
    read_end, write_end = os.pipe()
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # where ``monitor`` is importable from
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE, str(write_end)],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=(write_end,),
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return process, os.fdopen(read_end, "rb")
