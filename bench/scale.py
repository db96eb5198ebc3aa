"""Scale: 2,000 feeds over a big database, clustering cost as it grows, daemon memory.

    .venv/bin/python bench/scale.py [--articles 1000000] [--feeds 2000]
                                    [--sizes 10000,100000,1000000] [--new-feeds 200]
                                    [--cycles 4] [--only a,b,c] [--data-dir DIR]

A feed server (``tests/feedserver.py``) runs in its own process and serves ``--feeds``
distinct URLs cycling through the real outlets' files (as ``poll_throughput.py``). The
prefilled databases come from ``fill_db.py`` and are cached in ``--data-dir`` as
``fill-<articles>.db`` (made when missing); every measurement works on a fresh copy.

(a) ``monitor poll`` of the ``--feeds`` URLs, cold then re-poll (every answer 304), over a
    database prefilled with ``--articles`` articles. Whole-process wall times, with the
    stages of the daemon's own code path (warm start of the clusterer, ingest planning:
    dedupe + entity matching + clustering, the storage write).
(b) The same ``--new-feeds`` feeds polled into databases of each ``--sizes``: seconds per
    new article for the whole process and for planning + writing, articles per second
    through the planner (dedupe, matching, clustering), and the warm-start cost.
(c) ``monitor run`` (the daemon) over ``--cycles`` full cycles of the ``--feeds`` URLs
    (``poll_interval``/``min_interval``/feed ``interval`` 1s, so feeds are due again at
    the next tick), on a copy of the ``--articles`` database: RSS summed over the
    process tree (forkserver and pool workers included) sampled every 0.2 s; the peak is
    printed. Stopped with SIGTERM.

Targets: peak RSS < 300 MB; per-article cost flat as the database grows.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    MONITOR,
    ROOT,
    RssSampler,
    ServerProcess,
    compile_bytecode,
    copy_db,
    corpus_files,
    feed_errors,
    mix_summary,
    print_machine,
    sqlite_count,
    table,
    timed,
    workdir,
    write_config,
)

RSS_TARGET_MB = 300
DAEMON_SETTINGS = {"poll_interval": "1s", "min_interval": "1s"}
CYCLE_LINE = re.compile(r"cycle feeds=(\d+) failed=(\d+) new=(\d+) alerts=(\d+) seconds=([\d.]+)")


def filled_db(data_dir: Path, articles: int) -> Path:
    """``fill-<articles>.db`` in ``data_dir``, made by fill_db.py when missing."""
    path = data_dir / f"fill-{articles}.db"
    if path.exists():
        try:
            if sqlite_count(path, "articles") >= articles:
                return path
        except Exception:  # noqa: BLE001 - a half-written file: make it again
            pass
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"filling {path} ...", flush=True)
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fill_db.py"), "--articles", str(articles)]
        + ["--db", str(path), "--force"],
        check=True,
        cwd=ROOT,
    )
    return path


def timed_poll(config: Path, out: Path) -> tuple[float, dict[str, Any]]:
    """Whole-process wall time of ``monitor poll`` plus the stage timings it recorded
    (and ``cpu``: CPU seconds of the process tree)."""
    result = timed(
        [sys.executable, "-m", "bench.common", "timed-poll", "--config", str(config)]
        + ["--out", str(out)],
        cwd=ROOT,
    )
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"timed poll failed ({result.returncode}):\n{result.stderr[-3000:]}")
    info = json.loads(out.read_text())
    out.unlink()
    summary = [ln for ln in result.stderr.splitlines() if ln.startswith("polled ")]
    info["summary"] = summary[-1] if summary else ""
    info["cpu"] = result.cpu
    return result.seconds, info


def _stage(info: dict[str, Any], name: str) -> float:
    return float(info["timings"].get(name, 0.0))


def _plan(info: dict[str, Any]) -> float:
    """Planning time without a (lazy) warm start that ran inside it."""
    return _stage(info, "plan_ingest") - _stage(info, "warm_in_plan")


# --------------------------------------------------------------------------- (a)


def bench_big_poll(tmp: Path, urls: list[str], base: Path, articles: int) -> None:
    print(f"\n(a) monitor poll, {len(urls)} feeds, database prefilled with {articles:,} articles")
    db = tmp / "a.db"
    copy_db(base, db)
    config = write_config(tmp / "a", urls, database=db)
    rows = []
    for label in ("cold", "re-poll (304)"):
        wall, info = timed_poll(config, tmp / "a.json")
        c = info["counts"]
        rows.append(
            [
                label,
                f"{wall:.1f}",
                f"{info['cpu']:.1f}",
                f"{_stage(info, 'warm_start'):.1f} ({c.get('warm_articles', 0):,} art.)",
                f"{_stage(info, 'run_cycle') - _stage(info, 'store_cycle'):.1f}",
                f"{_plan(info):.1f}",
                f"{_stage(info, 'db_write'):.1f}",
                c.get("new", 0),
                c.get("duplicates", 0),
            ]
        )
        print(f"  {label}: {wall:.1f}s wall {info['cpu']:.1f}s CPU  {info['summary']}", flush=True)
        for error, feeds in feed_errors(db):
            print(f"    {feeds} feeds with last_error: {error}")
    print(
        table(
            [
                "poll",
                "wall s",
                "CPU s",
                "warm start s",
                "fetch+parse s",
                "plan s (no warm start)",
                "db write s",
                "new",
                "dupes",
            ],
            rows,
        )
    )
    print(f"  articles stored now: {sqlite_count(db, 'articles'):,}")
    db.unlink()


# --------------------------------------------------------------------------- (b)


def bench_growth(tmp: Path, urls: list[str], sizes: list[int], data_dir: Path) -> None:
    print(f"\n(b) per-article cost as the database grows: {len(urls)} new feeds polled into each")
    rows = []
    for size in sizes:
        base = filled_db(data_dir, size)
        db = tmp / f"b{size}.db"
        copy_db(base, db)
        config = write_config(tmp / f"b{size}", urls, database=db)
        wall, info = timed_poll(config, tmp / "b.json")
        c = info["counts"]
        new = max(1, int(c.get("new", 0)))
        plan = _plan(info)
        write = _stage(info, "db_write")
        rows.append(
            [
                f"{size:,}",
                f"{wall:.1f}",
                f"{info['cpu']:.1f}",
                f"{wall / new * 1000:.2f}",
                f"{(plan + write) / new * 1000:.2f}",
                f"{new / plan:,.0f}" if plan else "-",
                f"{_stage(info, 'warm_start'):.1f}",
                f"{c.get('warm_articles', 0):,}",
                new,
            ]
        )
        print(f"  {size:,}: {wall:.1f}s wall {info['cpu']:.1f}s CPU  {info['summary']}", flush=True)
        db.unlink()
    print(
        table(
            [
                "stored articles",
                "poll wall s",
                "CPU s",
                "wall ms/new article",
                "plan+write ms/article",
                "planned articles/s",
                "warm start s",
                "warm articles",
                "new",
            ],
            rows,
        )
    )


# --------------------------------------------------------------------------- (c)


def bench_daemon_memory(
    tmp: Path, urls: list[str], base: Path, cycles: int, timeout: float
) -> None:
    print(f"\n(c) monitor run: {cycles} full cycles of {len(urls)} feeds, tree RSS every 0.2 s")
    db = tmp / "c.db"
    copy_db(base, db)
    config = write_config(tmp / "c", urls, database=db, settings=DAEMON_SETTINGS, interval="1s")
    proc = subprocess.Popen(
        [MONITOR, "--config", str(config), "--log-level", "INFO", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    full: list[tuple[int, int, float]] = []  # (feeds, new, seconds) of each full cycle
    partial: list[int] = []
    events: dict[str, float] = {}  # "started" (warm start done), "cycle N" -> monotonic time
    done = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "started pid=" in line:
                events["started"] = time.monotonic()
            m = CYCLE_LINE.search(line)
            if m is None:
                continue
            feeds, new, seconds = int(m.group(1)), int(m.group(3)), float(m.group(5))
            if feeds >= 0.9 * len(urls):
                full.append((feeds, new, seconds))
                events[f"cycle {len(full)}"] = time.monotonic()
                print(f"  cycle {len(full)}: feeds={feeds} new={new} {seconds:.1f}s", flush=True)
                if len(full) >= cycles:
                    done.set()
            else:
                partial.append(feeds)
        done.set()

    started = time.perf_counter()
    t0 = time.monotonic()
    reader = threading.Thread(target=watch, daemon=True)
    with RssSampler(proc.pid, 0.2) as sampler:
        reader.start()
        finished = done.wait(timeout)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    elapsed = time.perf_counter() - started
    reader.join(5)
    peak_mb = sampler.peak / 1e6
    verdict = (
        "met" if peak_mb < RSS_TARGET_MB else f"target missed: {peak_mb:.0f} vs {RSS_TARGET_MB}"
    )
    if not finished:
        print(f"  (stopped after {timeout:.0f}s timeout with {len(full)} full cycles)")
    print(
        f"  peak RSS (process tree) {peak_mb:.0f} MB over {elapsed:.0f}s, {sampler.samples} "
        f"samples, {len(full)} full cycles (+{len(partial)} partial); exit {code} after SIGTERM; "
        f"< {RSS_TARGET_MB} MB: {verdict}"
    )
    print(f"  at the peak: {sampler.describe_peak()}")
    marks = [("start-up (config, schema, clusterer warm start)", t0)]
    if "started" in events:
        marks.append(("cycle 1 (cold)", events["started"]))
    if "cycle 1" in events:
        marks.append((f"cycles 2-{len(full)} (304s)", events["cycle 1"]))
    ends = [t for _label, t in marks[1:]] + [time.monotonic()]
    for (label, begin), end in zip(marks, ends, strict=True):
        print(f"  peak during {label}: {sampler.peak_between(begin, end) / 1e6:.0f} MB")
    db.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--articles", type=int, default=1_000_000, help="prefill for (a) and (c)")
    ap.add_argument("--feeds", type=int, default=2000, help="feeds for (a) and (c)")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="database sizes for (b)")
    ap.add_argument("--new-feeds", type=int, default=200, help="feeds polled in (b)")
    ap.add_argument("--cycles", type=int, default=4, help="full daemon cycles in (c)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds (c) may run at most")
    ap.add_argument("--mix", choices=("real", "small"), default="real")
    ap.add_argument("--only", default="a,b,c", help="which parts to run, e.g. b or a,c")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path("/tmp/feed-monitor-bench"),
        help="where filled databases are cached (fill-<articles>.db)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.only.split(",")}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    files = corpus_files(args.mix)
    n = max(args.feeds, args.new_feeds)
    print_machine()
    compile_bytecode()
    print(f"mix={args.mix}: {mix_summary(files, args.feeds)}")
    base = filled_db(args.data_dir, args.articles) if parts & {"a", "c"} else None
    with (
        workdir(args.keep, "bench-scale-") as tmp,
        ServerProcess([f.path for f in files], n) as srv,
    ):
        print(f"server {srv.base_url} (separate process)")
        if "a" in parts and base is not None:
            bench_big_poll(tmp, srv.urls[: args.feeds], base, args.articles)
        if "b" in parts:
            bench_growth(tmp, srv.urls[: args.new_feeds], sizes, args.data_dir)
        if "c" in parts and base is not None:
            bench_daemon_memory(tmp, srv.urls[: args.feeds], base, args.cycles, args.timeout)


if __name__ == "__main__":
    main()
