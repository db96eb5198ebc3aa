"""The parse worker pool: no process before the first job; a dead worker does not break it;
its workers import parsing only."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import types
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor import parsejob
from monitor.normalize import process_document
from monitor.parsejob import MAIN_ENV, parse_with_limit
from monitor.workers import LazyPool, parse_pool

DATA = Path(__file__).parent / "data"


def _pid() -> int:
    return os.getpid()


def _die() -> None:
    os._exit(9)  # what the OOM killer or a crash in a C extension does to a worker


def test_no_process_starts_until_the_first_job() -> None:
    before = set(multiprocessing.active_children())
    pool = parse_pool(2)
    assert isinstance(pool, LazyPool)
    try:
        assert not pool.started
        assert set(multiprocessing.active_children()) == before
        assert pool.submit(_pid).result(timeout=60) != os.getpid()
        assert pool.started
    finally:
        pool.shutdown()


def test_one_core_parses_in_process() -> None:
    assert parse_pool(1) is None


def test_a_dead_worker_fails_its_job_and_the_pool_is_replaced() -> None:
    pool = parse_pool(2)
    assert pool is not None
    try:
        with pytest.raises(BrokenProcessPool):
            pool.submit(_die).result(timeout=60)
        results = [pool.submit(_pid) for _ in range(4)]
        assert all(f.result(timeout=60) > 0 for f in results)
    finally:
        pool.shutdown()


def test_no_job_after_shutdown() -> None:
    pool = parse_pool(2)
    assert pool is not None
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(_pid)


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
        assert "monitor.parsejob" in modules  # the forkserver's preload
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
    assert MAIN_ENV not in os.environ  # the parent's environment is left as it was


def test_the_hook_only_touches_a_process_without_a_main_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setenv(MAIN_ENV, "/somewhere/monitor")
    parsejob._skip_parent_main()
    assert getattr(main, "__file__", None) == "/somewhere/monitor"
    assert MAIN_ENV not in os.environ
    main.__file__ = "/my/own/script.py"
    monkeypatch.setenv(MAIN_ENV, "/somewhere/monitor")
    parsejob._skip_parent_main()
    assert main.__file__ == "/my/own/script.py"
