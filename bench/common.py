"""Shared helpers of the benchmarks: corpus selection, a feed server in its own process,
config files, whole-process timing, the lemon24/reader peer, process-tree memory.

Heavy imports stay inside functions: a measured child process that imports this module
(``python -m bench.common ...``) must not pay for what it does not use.

Also runnable::

    python -m bench.common serve --n 20   # paths: a JSON line on stdin; serves until EOF
    python -m bench.common timed-poll --config feeds.yaml --out timings.json

``timed-poll`` runs ``monitor poll`` in this process with timers around the stages of the
daemon's own code path (warm start of the clusterer, the cycle, the ingest planner, the
storage write) and writes them as JSON. A lazy warm start runs inside the planner; its
time is also recorded as ``warm_in_plan`` so that it can be told apart.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FEEDS_DIR = SHARED_DATA / "feeds"
MANIFEST = FEEDS_DIR / "MANIFEST.tsv"
VENV_BIN = Path(sys.executable).parent
MONITOR = str(VENV_BIN / "monitor") if (VENV_BIN / "monitor").exists() else "monitor"

SMALL_MIX_MAX_BYTES = 128 * 1024  # --mix small: readable files up to this size

# A few tracked entities, like the bundled feeds.yaml (the matcher and alert rule do real work).
ENTITIES: tuple[dict[str, Any], ...] = (
    {
        "name": "Wagner Group",
        "aliases": ["Wagner PMC", "Wagner mercenaries", {"text": "PMC Wagner", "case": "exact"}],
        "exclude": ["Richard Wagner"],
    },
    {"name": "Vladimir Putin", "aliases": ["Putin"]},
    {"name": "NATO", "aliases": ["North Atlantic Treaty Organization"]},
    {"name": "Volodymyr Zelensky", "aliases": ["Zelensky", "Zelenskyy"]},
    {"name": "Apple", "aliases": ["iPhone", "iPad"]},
    {"name": "Google", "aliases": ["Alphabet", "YouTube"]},
    {"name": "Amazon Web Services", "aliases": [{"text": "AWS", "case": "exact"}]},
    {"name": "Linux", "aliases": ["Arch Linux", "Ubuntu"]},
    {"name": "Python", "aliases": ["PyPy", "CPython"]},
    {"name": "Donald Trump", "aliases": ["Trump"]},
)


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to FEEDS_DIR
    size: int
    version: str
    items: int


def manifest() -> list[CorpusFile]:
    with MANIFEST.open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            CorpusFile(r["path"], int(r["bytes"]), r["feedparser_version"], int(r["items"] or 0))
            for r in rows
        ]


def corpus_files(mix: str = "real") -> list[CorpusFile]:
    """The real outlets' files (feedparser's own test corpus left out) that feedparser
    reads with at least one entry; ``small``: only those up to ``SMALL_MIX_MAX_BYTES``."""
    files = [
        f
        for f in manifest()
        if not f.path.startswith("feedparser/") and f.items >= 1 and (FEEDS_DIR / f.path).is_file()
    ]
    if mix == "small":
        files = [f for f in files if f.size <= SMALL_MIX_MAX_BYTES]
    elif mix != "real":
        raise ValueError(f"unknown mix {mix!r} (real or small)")
    return sorted(files, key=lambda f: f.path)


def mix_summary(files: Sequence[CorpusFile], n: int) -> str:
    """Bytes and entries served by ``n`` URLs cycling through ``files``."""
    picked = [files[i % len(files)] for i in range(n)]
    size = sum(f.size for f in picked)
    items = sum(f.items for f in picked)
    return (
        f"{n} URLs over {len(files)} distinct files: {size / 1e6:.1f} MB, "
        f"{items} entries (feedparser)"
    )


# --------------------------------------------------------------------------- the server


class ServerProcess:
    """``tests.feedserver.FeedServer`` in a child process: its CPU is not the client's.

    The child reads the corpus paths (one JSON line on its stdin), builds
    ``copy_urls(relpaths, n)``, fetches every distinct file once (so its cache is warm
    before anything is timed), prints ``{"base_url", "urls"}`` and serves until its stdin
    closes (also when this process dies: nothing is left behind).
    """

    def __init__(self, relpaths: Sequence[str], n: int, latency: float = 0.0) -> None:
        self.relpaths = list(relpaths)
        self.n = n
        self.latency = latency
        self.proc: subprocess.Popen[str] | None = None
        self.urls: list[str] = []
        self.base_url = ""

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "bench.common", "serve", "--n", str(self.n)),
                *("--latency", str(self.latency)),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.relpaths) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("feed server process died at start-up")
        info = json.loads(line)
        self.base_url, self.urls = info["base_url"], info["urls"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _serve(n: int, latency: float = 0.0) -> None:
    import urllib.request

    sys.path.insert(0, str(ROOT))
    from tests.feedserver import FeedServer

    relpaths = json.loads(sys.stdin.readline())
    server = FeedServer(FEEDS_DIR).start()
    try:
        for rel in relpaths:  # warm the file cache (read + hash) before anything is timed
            with urllib.request.urlopen(server.file_url(rel)) as resp:
                resp.read()
        urls = server.copy_urls(relpaths, n)
        server.latency = latency
        server.reset_counters()
        print(json.dumps({"base_url": server.base_url, "urls": urls}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        server.stop()


# --------------------------------------------------------------------------- configs


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def write_config(
    directory: Path,
    urls: Sequence[str],
    *,
    database: Path | None = None,
    settings: dict[str, str] | None = None,
    interval: str | None = None,
    database_url: str | None = None,
) -> Path:
    """A feeds.yaml with default settings (unless given), ``ENTITIES`` and one log channel."""
    directory.mkdir(parents=True, exist_ok=True)
    url = database_url or "sqlite:///" + str(database or directory / "monitor.db")
    lines = ["version: 1", "settings:", f"  database: {_yaml_str(url)}"]
    for key, value in (settings or {}).items():
        lines.append(f"  {key}: {value}")
    lines.append("feeds:")
    for i, url in enumerate(urls):
        lines.append(f"  - url: {_yaml_str(url)}")
        lines.append(f"    name: {_yaml_str(f'bench feed {i}')}")
        if interval:
            lines.append(f"    interval: {interval}")
    lines.append("entities:")
    for ent in ENTITIES:
        lines.append(f"  - name: {_yaml_str(ent['name'])}")
        aliases = [
            _yaml_str(a) if isinstance(a, str) else f"{{text: {_yaml_str(a['text'])}, case: exact}}"
            for a in ent.get("aliases", ())
        ]
        lines.append(f"    aliases: [{', '.join(aliases)}]")
        if ent.get("exclude"):
            lines.append(f"    exclude: [{', '.join(_yaml_str(x) for x in ent['exclude'])}]")
    lines += ["alerts:", "  - name: log", "    type: log", "    path: alerts.jsonl"]
    path = directory / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timed:
    seconds: float  # wall
    cpu: float  # user + system CPU of the process and every descendant it waited for
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float | None = None) -> Timed:
    """Whole-process wall time of ``cmd`` (interpreter start and imports included), and the
    CPU time used by it and its descendants (parse workers; reader's have none).

    On a shared machine the CPU time is the steadier figure. The process's own CPU comes
    from the rusage of waited-for children (exact), which includes the parse workers
    monitor waits for; other descendants are not ours to wait for (an earlier monitor's
    forkserver outlived it), so theirs is their last sample (every 0.1 s).
    """
    import psutil

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cpu0 = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    with suppress(psutil.Error):
                        if "monitor.parsejob" in " ".join(child.cmdline()):
                            continue  # monitor waits for its parse workers: in ``own``
                        t = child.cpu_times()
                        last[child.pid] = t.user + t.system
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - started
    own = _children_cpu() - cpu0  # the waited-for process (and what it waited for)
    return Timed(seconds, own + sum(last.values()), proc.returncode, out, err)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def monitor_poll(config: Path, *, timeout: float | None = None) -> Timed:
    result = timed(
        [MONITOR, "--config", str(config), "--log-level", "WARNING", "poll"], timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"monitor poll failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def poll_summary(result: Timed) -> str:
    """The "polled N feeds in ..." line that ``monitor poll`` prints."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("polled ")]
    return lines[-1] if lines else "(no summary line)"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def sqlite_count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?")


def feed_errors(db: Path) -> list[tuple[str, int]]:
    """(last_error, feeds) over the feeds with a ``last_error``, most frequent first;
    timestamps in the messages are replaced by ``<time>`` so alike errors group."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT last_error FROM feeds WHERE last_error IS NOT NULL").fetchall()
    finally:
        con.close()
    counts: dict[str, int] = {}
    for (error,) in rows:
        key = _TIMESTAMP.sub("<time>", str(error))
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def copy_db(src: Path, dst: Path) -> None:
    """Copy a (checkpointed) SQLite file; no -wal/-shm may lie beside ``src``."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- reader


# Run with ``python -c``: the child imports only reader (and what it needs).
READER_SCRIPT = r"""
import json, sys
from reader import make_reader
db, urls_file, add = sys.argv[1], sys.argv[2], sys.argv[3] == "add"
reader = make_reader(db)
if add:
    for url in json.load(open(urls_file)):
        reader.add_feed(url, exist_ok=True)
reader.update_feeds(workers=4, scheduled=False)
counts = reader.get_entry_counts()
print(json.dumps({"entries": counts.total}))
reader.close()
"""


def reader_poll(db: Path, urls_file: Path, *, add: bool) -> tuple[Timed, int]:
    """lemon24/reader in a fresh process: (add the feeds and) ``update_feeds(workers=4)``."""
    result = timed(
        [sys.executable, "-c", READER_SCRIPT, str(db), str(urls_file), "add" if add else "-"]
    )
    if result.returncode != 0:
        raise RuntimeError(f"reader failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result, int(json.loads(result.stdout.strip().splitlines()[-1])["entries"])


# --------------------------------------------------------------------------- memory


def tree_rss_parts(pid: int) -> list[tuple[int, str, int]]:
    """(pid, role, RSS bytes) of ``pid`` and all its descendants (pool workers included)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    parts = []
    for p in procs:
        with suppress(psutil.Error):
            cmd = " ".join(p.cmdline())
            if p.pid == pid:
                role = "main"
            elif "monitor.parsejob" in cmd:
                role = "worker"  # monitor.workers' parse worker
            elif p.ppid() != pid:
                role = "worker"  # forked by a forkserver (monitor before the ParsePool)
            elif "forkserver" in cmd:
                role = "forkserver"
            elif "resource_tracker" in cmd:
                role = "resource_tracker"
            else:
                role = "child"
            parts.append((p.pid, role, int(p.memory_info().rss)))
    return parts


def tree_rss(pid: int) -> int:
    """RSS in bytes summed over ``pid`` and all its descendants."""
    return sum(rss for _pid, _role, rss in tree_rss_parts(pid))


class RssSampler:
    """Samples the tree RSS of ``pid`` every ``period`` seconds on a thread; keeps the peak
    (and the processes that made it up)."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        self.pid = pid
        self.period = period
        self.peak = 0
        self.peak_parts: list[tuple[int, str, int]] = []
        self.timeline: list[tuple[float, int]] = []  # (time.monotonic(), tree RSS)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            parts = tree_rss_parts(self.pid)
            rss = sum(r for _p, _role, r in parts)
            if rss > self.peak:
                self.peak, self.peak_parts = rss, parts
            self.timeline.append((time.monotonic(), rss))
            self.samples += 1
            self._stop.wait(self.period)

    def describe_peak(self) -> str:
        return ", ".join(f"{role} {rss / 1e6:.0f} MB" for _pid, role, rss in self.peak_parts)

    def peak_between(self, start: float, end: float) -> int:
        """The highest tree RSS sampled in [start, end) (``time.monotonic()`` times)."""
        return max((rss for t, rss in self.timeline if start <= t < end), default=0)


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_machine() -> None:
    m = machine()
    print(f"machine: nproc={m['nproc']} cpu={m['cpu']!r} python={m['python']} ({m['platform']})")
    print_load()


def compile_bytecode() -> None:
    """Write the project's bytecode before anything is timed, as installing a package does.

    pip compiles what it installs (reader, and every dependency, has its ``.pyc``), but
    the project is an editable install here, and where ``PYTHONDONTWRITEBYTECODE`` is
    set (this machine's environment sets it) each timed ``monitor`` process would compile
    its ~40 modules from source: ~0.15 s of a 1 s re-poll that an installed copy never
    pays. ``compileall`` writes the files whatever that variable says, and only for
    sources newer than their bytecode.
    """
    import compileall

    for package in ("monitor", "storage", "alerts"):
        compileall.compile_dir(ROOT / package, quiet=1)
    print("bytecode: monitor, storage and alerts compiled, as an installed package has it")


def print_load() -> None:
    """The load average: other work on the machine inflates wall times."""
    one, five, fifteen = os.getloadavg()
    print(f"load average: {one:.2f} {five:.2f} {fifteen:.2f}", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for k, r in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


@contextmanager
def workdir(keep: bool, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- timed poll


def _timed_poll(config: str, out: str) -> None:
    """``monitor poll`` in this process, with timers around the daemon's own stages."""
    import monitor.clustercache as clustercache
    import monitor.daemon as daemon
    import monitor.pipeline as pipeline
    from monitor.cli import main

    timings: dict[str, float] = {}
    counts: dict[str, int] = {}

    def timer(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            async def awaited(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

            return awaited

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

        return wrapped

    build_clusterer = clustercache.build_clusterer

    planning = threading.local()  # is plan_ingest running (in this thread)?

    def warm(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        clusterer = timer("warm_start", build_clusterer)(*args, **kwargs)
        if getattr(planning, "active", False):  # a lazy warm start, inside the planner
            timings["warm_in_plan"] = timings.get("warm_in_plan", 0.0) + (
                time.perf_counter() - started
            )
        counts["warm_articles"] = clusterer.live_articles
        return clusterer

    plan_ingest = getattr(pipeline, "plan_ingest")  # noqa: B009

    def plan(*args: Any, **kwargs: Any) -> Any:
        planning.active = True
        try:
            result = timer("plan_ingest", plan_ingest)(*args, **kwargs)
        finally:
            planning.active = False
        counts["new"] = counts.get("new", 0) + result[1].new
        counts["duplicates"] = counts.get("duplicates", 0) + result[1].duplicates
        return result

    # the daemon's module globals, looked up at call time: wrap them in place
    setattr(clustercache, "build_clusterer", warm)  # noqa: B010
    setattr(pipeline, "plan_ingest", plan)  # noqa: B010
    setattr(pipeline, "store_cycle", timer("store_cycle", pipeline.store_cycle))  # noqa: B010
    setattr(daemon, "run_cycle", timer("run_cycle", pipeline.run_cycle))  # noqa: B010

    from storage.articles import ArticleRepo

    ArticleRepo.apply = timer("db_write", ArticleRepo.apply)  # type: ignore[method-assign]
    started = time.perf_counter()
    code = 0
    try:
        main(["--config", config, "--log-level", "WARNING", "poll"], standalone_mode=False)
    except SystemExit as exc:
        code = int(exc.code or 0)
    timings["in_process_total"] = time.perf_counter() - started
    Path(out).write_text(json.dumps({"timings": timings, "counts": counts, "exit": code}))


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.common")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="the feed server (paths: one JSON line on stdin)")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--latency", type=float, default=0.0)
    t = sub.add_parser("timed-poll")
    t.add_argument("--config", required=True)
    t.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        _serve(args.n, args.latency)
    else:
        _timed_poll(args.config, args.out)


if __name__ == "__main__":
    _main()
