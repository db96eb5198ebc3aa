"""The parse worker pool: no process before the first job; a dead worker fails only its
job; its workers import parsing only and exit with the daemon."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import ParseError
from monitor.normalize import process_document
from monitor.parsejob import KEEP, MAX_WORKER_RSS, RETIRE, parse_with_limit, run_limited
from monitor.workers import ParsePool, WorkerDied, _start_worker, parse_pool
from tests import workerjobs

DATA = Path(__file__).parent / "data"


def _children() -> set[int]:
    """This process's child processes (Linux)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_no_process_starts_until_the_first_job() -> None:
    before = _children()
    pool = parse_pool(2)
    assert isinstance(pool, ParsePool)
    try:
        assert not pool.started
        assert _children() == before
        pids = {pool.submit(os.getpid).result(timeout=60) for _ in range(6)}
        assert pool.started
        assert os.getpid() not in pids
        assert pids <= _children()
    finally:
        pool.shutdown()
    assert not _children() & pids  # shut down: the workers exited and were reaped


def test_one_core_parses_in_process() -> None:
    assert parse_pool(1) is None


def test_a_dead_worker_fails_its_job_only_and_is_restarted() -> None:
    pool = parse_pool(2)
    assert pool is not None
    try:
        with pytest.raises(WorkerDied, match=r"died while parsing \(exit code 9\)") as died:
            pool.submit(os._exit, 9).result(timeout=60)  # what the OOM killer or a C crash does
        assert isinstance(died.value, ParseError)  # recorded on the feed like a parse error
        results = [pool.submit(os.getpid) for _ in range(4)]
        assert all(f.result(timeout=60) > 0 for f in results)
    finally:
        pool.shutdown()


def test_a_job_error_is_raised_to_the_caller_and_the_worker_carries_on() -> None:
    pool = parse_pool(2)
    assert pool is not None
    try:
        with pytest.raises(ValueError, match="invalid literal"):
            pool.submit(int, "x").result(timeout=60)
        kwargs: dict[str, Any] = {"url": FEED, "content_type": "text/html", "headers": {}}
        kwargs["fetched"] = datetime(2026, 1, 2, tzinfo=UTC)
        with pytest.raises(ParseError, match="not a feed: HTML document"):
            pool.submit(parse_with_limit, 60.0, FEED, b"<html><p>hi", kwargs).result(60)
        assert pool.submit(print, "a parser writing to stdout").result(timeout=60) is None
        assert pool.submit(sum, [1, 2, 3]).result(timeout=60) == 6  # answers still in step
    finally:
        pool.shutdown()


def _stuck_in_c(seconds: float) -> None:
    """Like a parse stuck inside C code, where the alarm cannot interrupt it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)


def test_a_job_past_its_limit_is_stopped_even_where_the_alarm_cannot_reach() -> None:
    pool = parse_pool(2)
    assert pool is not None
    try:
        with pytest.raises(ParseError, match="parsing took longer than 1s"):
            pool.submit(run_limited, 1.0, time.sleep, 30).result(timeout=20)
        started = time.monotonic()
        with pytest.raises(WorkerDied, match=r"exit code 1\b"):
            pool.submit(run_limited, 1.0, _stuck_in_c, 30).result(timeout=20)
        assert time.monotonic() - started < 20  # ended at 1.5 s, not after 30
        assert pool.submit(sum, [1, 2]).result(timeout=60) == 3  # a new worker took over
    finally:
        pool.shutdown()


def test_an_idle_worker_exits_and_the_next_job_starts_another() -> None:
    pool = ParsePool(1, idle_exit=0.5)
    try:
        first = pool.submit(os.getpid).result(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(first)  # ended, and reaped: no zombie left either
        second = pool.submit(os.getpid).result(timeout=60)
        assert second != first
    finally:
        pool.shutdown()


def test_shutdown_cancels_queued_jobs() -> None:
    pool = parse_pool(2)
    assert pool is not None
    jobs = [pool.submit(time.sleep, 0.5) for _ in range(6)]
    time.sleep(0.2)
    pool.shutdown(cancel_futures=True)
    assert sum(job.cancelled() for job in jobs) >= 3
    for job in jobs:
        if not job.cancelled():
            assert job.result() is None


def test_no_job_after_shutdown() -> None:
    pool = parse_pool(2)
    assert pool is not None
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(os.getpid)


def test_workers_exit_when_the_daemon_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from monitor.workers import parse_pool

        pool = parse_pool(2)
        pids = {pool.submit(os.getpid).result(60) for _ in range(8)}
        print(" ".join(map(str, pids)), flush=True)
        sys.stdin.read()  # until killed
        """
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert daemon.stdout is not None
    workers = [int(pid) for pid in daemon.stdout.readline().split()]
    assert workers and all(_alive(pid) for pid in workers)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)  # they read end-of-file and exited


FEED = "https://example.com/feed"
HEAVY = ("sqlalchemy", "pydantic", "httpx", "monitor.cli", "monitor.pipeline", "storage.store")


def _modules() -> list[str]:
    return sorted(sys.modules)


def test_a_worker_parses_a_real_feed_without_importing_the_daemon() -> None:
    content = (DATA / "atom_xmlbase.xml").read_bytes()
    fetched = datetime(2026, 1, 2, tzinfo=UTC)
    kwargs: dict[str, Any] = {"url": FEED, "content_type": "application/atom+xml"}
    kwargs |= {"headers": {}, "fetched": fetched}
    pool = parse_pool(2)
    assert pool is not None
    try:
        jobs = [pool.submit(parse_with_limit, 60.0, FEED, content, kwargs) for _ in range(4)]
        results = [job.result(timeout=60) for job in jobs]
        # a builtin as the job: reading sys.modules imports nothing into the worker
        seen = [pool.submit(eval, "sorted(__import__('sys').modules)") for _ in range(4)]
        loaded = [set(job.result(timeout=60)) for job in seen]
    finally:
        pool.shutdown()
    assert all(r == process_document(FEED, content, **kwargs) for r in results)
    assert results[0].articles
    for modules in loaded:
        assert "monitor.parsejob" in modules  # the worker's program
        assert not modules & set(HEAVY)


def test_workers_do_not_run_the_parent_main_script(tmp_path: Path) -> None:
    """Like the ``monitor`` console script: a main script that imports the daemon."""
    script = tmp_path / "main_script"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import sqlalchemy  # what the CLI drags in
            from monitor.workers import parse_pool

            if __name__ == "__main__":
                pool = parse_pool(2)
                try:
                    found = pool.submit(eval, "sorted(__import__('sys').modules)").result(60)
                finally:
                    pool.shutdown()
                print(json.dumps(found))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    modules = set(json.loads(done.stdout))
    assert "monitor.parsejob" in modules
    assert "sqlalchemy" not in modules  # the script was not run again in the worker


BIG_MIB = 80  # held by a worker: well past its cap (a fresh worker holds ~12 MiB)


def test_a_worker_left_big_answers_its_job_then_a_fresh_one_takes_the_next() -> None:
    assert BIG_MIB * 2**20 > MAX_WORKER_RSS
    pool = ParsePool(1)  # one worker: every job goes to it, or to its successor
    try:
        first = pool.submit(os.getpid).result(timeout=60)
        assert pool.submit(os.getpid).result(timeout=60) == first  # small: kept
        # a big job whose memory went back when it was done: still small, still kept
        assert pool.submit(workerjobs.use_memory, BIG_MIB).result(timeout=60) == first
        assert pool.submit(os.getpid).result(timeout=60) == first
        # a job that leaves the worker past its cap is answered as usual...
        assert pool.submit(workerjobs.hold_memory, BIG_MIB).result(timeout=60) == first
        assert not _alive(first)  # ...by a worker that then exited, and was reaped
        second = pool.submit(os.getpid).result(timeout=60)
        assert second != first  # the next job started a fresh worker
        assert pool.submit(os.getpid).result(timeout=60) == second  # which is kept
        with pytest.raises(ValueError, match="invalid literal"):
            pool.submit(int, "x").result(timeout=60)
        assert pool.submit(os.getpid).result(timeout=60) == second
    finally:
        pool.shutdown()


def test_a_worker_prefixes_each_answer_with_whether_it_goes_on() -> None:
    process, answers = _start_worker()
    assert process.stdin is not None
    try:
        process.stdin.write(pickle.dumps((os.getpid, (), {})))
        process.stdin.flush()
        assert answers.read(1) == KEEP
        assert pickle.load(answers) == (True, process.pid)
        process.stdin.write(pickle.dumps((int, ("x",), {})))
        process.stdin.flush()
        assert answers.read(1) == KEEP  # a job's error is an answer like any other
        ok, error = pickle.load(answers)
        assert ok is False
        assert isinstance(error, ValueError)
        process.stdin.write(pickle.dumps((workerjobs.hold_memory, (BIG_MIB,), {})))
        process.stdin.flush()
        assert answers.read(1) == RETIRE
        assert pickle.load(answers) == (True, process.pid)
        assert answers.read() == b""  # nothing after its last answer: it returned
        assert process.wait(timeout=30) == 0
    finally:
        process.stdin.close()
        answers.close()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_worker_exits_cleanly_at_the_end_of_its_jobs() -> None:
    process, answers = _start_worker()
    assert process.stdin is not None
    try:
        process.stdin.write(pickle.dumps((sum, ([1, 2, 3],), {})))
        process.stdin.close()  # the pool closed it, or the daemon died
        assert answers.read(1) == KEEP
        assert pickle.load(answers) == (True, 6)
        assert answers.read() == b""
        assert process.wait(timeout=30) == 0
    finally:
        answers.close()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
