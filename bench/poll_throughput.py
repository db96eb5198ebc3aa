"""Poll throughput against lemon24/reader: N local copies of the real feeds.

    .venv/bin/python bench/poll_throughput.py [--n 200] [--mix real|small] [--repeat 1]

A feed server (``tests/feedserver.py``) runs in its own process and serves N distinct
URLs (``/copies/<i>/<file>``) cycling through the real outlets' files of
``../shared/data/feeds`` that feedparser reads with at least one entry (feedparser's own
test corpus left out; ``--mix small``: only files up to 128 KB). It answers conditional
requests with 304. Each figure is a whole-process wall time, imports included:

(a) ``monitor poll`` on a fresh database (default settings, a few entities, a log channel)
(b) ``monitor poll`` again: every answer is a 304
(c) reader in a fresh process: ``make_reader(db)``, add the N feeds,
    ``update_feeds(workers=4, scheduled=False)``
(d) reader again on its database (conditional requests, 304s)

Each measurement is repeated ``--repeat`` times on fresh databases; the median is shown.
Targets on a 2-core machine: cold <= 0.6x reader, re-poll <= 0.3x reader.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ServerProcess,
    Timed,
    compile_bytecode,
    corpus_files,
    feed_errors,
    median,
    mix_summary,
    monitor_poll,
    poll_summary,
    print_load,
    print_machine,
    reader_poll,
    sqlite_count,
    table,
    workdir,
    write_config,
)

Times = dict[str, list[Timed]]
COLD_TARGET = 0.6
REPOLL_TARGET = 0.3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="distinct feed URLs (default 200)")
    ap.add_argument("--mix", choices=("real", "small"), default="real")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (median shown)")
    ap.add_argument("--skip-reader", action="store_true", help="only time monitor")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    files = corpus_files(args.mix)
    print_machine()
    compile_bytecode()
    print(f"mix={args.mix}: {mix_summary(files, args.n)}")
    times: Times = {k: [] for k in ("ours_cold", "ours_re", "peer_cold", "peer_re")}
    ours_articles = peer_entries = 0
    with (
        workdir(args.keep, "bench-poll-") as tmp,
        ServerProcess([f.path for f in files], args.n) as srv,
    ):
        urls_file = tmp / "urls.json"
        urls_file.write_text(json.dumps(srv.urls))
        print(f"server {srv.base_url} (separate process)")
        for run in range(args.repeat):
            steps = [_ours] if args.skip_reader else [_ours, _peer]
            if run % 2:  # alternate who goes first, so a drift in load favours neither
                steps.reverse()
            for step in steps:
                count = step(run, tmp / f"run{run}", srv.urls, urls_file, times)
                if step is _ours:
                    ours_articles = count
                else:
                    peer_entries = count
            print_load()

    rows: list[list[object]] = []
    for label, ours_key, peer_key, target in (
        ("cold poll", "ours_cold", "peer_cold", COLD_TARGET),
        ("re-poll (304)", "ours_re", "peer_re", REPOLL_TARGET),
    ):
        ow = median([t.seconds for t in times[ours_key]])
        oc = median([t.cpu for t in times[ours_key]])
        peer_runs = times[peer_key]
        if peer_runs:
            pw = median([t.seconds for t in peer_runs])
            pc = median([t.cpu for t in peer_runs])
            ratio = ow / pw
            verdict = "met" if ratio <= target else f"target missed: {ratio:.2f}x vs {target}x"
            rows.append(
                [
                    label,
                    f"{ow:.2f}",
                    f"{pw:.2f}",
                    f"{ratio:.2f}x",
                    f"{oc:.1f}",
                    f"{pc:.1f}",
                    f"{oc / pc:.2f}x",
                    f"<= {target}x: {verdict}",
                ]
            )
        else:
            rows.append([label, f"{ow:.2f}", "-", "-", f"{oc:.1f}", "-", "-", "-"])
    print()
    print(
        f"N={args.n} mix={args.mix} repeat={args.repeat}: medians, whole process "
        "(wall seconds; CPU seconds summed over the process tree)"
    )
    print(
        table(
            [
                "measurement",
                "monitor wall",
                "reader wall",
                "wall ratio",
                "monitor CPU",
                "reader CPU",
                "CPU ratio",
                "target (wall)",
            ],
            rows,
        )
    )
    print(
        f"stored: monitor {ours_articles} articles (a canonical URL is stored once, however "
        f"many copies carry it); reader {peer_entries if not args.skip_reader else '-'} "
        "entries (per feed)"
    )


def _ours(run: int, run_dir: Path, urls: list[str], _urls_file: Path, times: Times) -> int:
    """monitor poll cold, then again; returns the articles stored."""
    config = write_config(run_dir / "monitor", urls)
    for key, label in (("ours_cold", "cold  "), ("ours_re", "repoll")):
        t = monitor_poll(config)
        times[key].append(t)
        print(f"  run {run + 1}: monitor {label} {_fmt(t)}  {poll_summary(t)}", flush=True)
        for error, feeds in feed_errors(run_dir / "monitor" / "monitor.db"):
            print(f"    {feeds} feeds with last_error: {error}")
    return sqlite_count(run_dir / "monitor" / "monitor.db", "articles")


def _peer(run: int, run_dir: Path, _urls: list[str], urls_file: Path, times: Times) -> int:
    """reader cold (adding the feeds), then again; returns the entries stored."""
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "reader.sqlite"
    entries = 0
    for key, label, add in (("peer_cold", "cold  ", True), ("peer_re", "repoll", False)):
        t, entries = reader_poll(db, urls_file, add=add)
        times[key].append(t)
        print(f"  run {run + 1}: reader  {label} {_fmt(t)}  entries={entries}", flush=True)
    return entries


def _fmt(t: Timed) -> str:
    return f"{t.seconds:7.2f}s wall {t.cpu:6.1f}s CPU"


if __name__ == "__main__":
    main()
