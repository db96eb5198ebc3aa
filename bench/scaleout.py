"""Feeds polled per second with 1, 2 and 3 `monitor run` instances on one PostgreSQL.

    .venv/bin/python bench/scaleout.py [--n 300] [--instances 1,2,3] [--mix real|small]
                                       [--latency SECONDS]

For each instance count, on a fresh PostgreSQL schema (``MONITOR_BENCH_PG``, default the
machine's server, database ``test``): a feeds.yaml of N local copies of the real feeds
(``bench.common``'s server in its own process), then k ``monitor run`` processes started
together; the clock runs until every feed has been fetched once (``last_fetch`` set in
the database; a feed's fetch is recorded when its slice is stored) and the instances are
stopped with SIGTERM. Printed: wall seconds from launch (imports and start-up
included), feeds per second, and how the feeds were shared (``polled_by``). Figures, not
assertions.

Every URL is on 127.0.0.1, so ``per_host`` is raised to ``concurrency`` (32) as if the
feeds were on distinct hosts. ``--latency 1`` makes every answer wait a second, like
distant servers: fetching is then I/O-bound, where more instances help even on one
machine; without it, parsing is CPU-bound and instances on one 2-core machine share the
same two cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bench.common import (
    MONITOR,
    ServerProcess,
    compile_bytecode,
    corpus_files,
    mix_summary,
    print_load,
    print_machine,
    table,
    workdir,
    write_config,
)

PG = os.environ.get("MONITOR_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def run_instances(directory: Path, urls: list[str], k: int) -> dict[str, object]:
    """Start ``k`` instances on a fresh schema; time until every feed was fetched once."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    config = write_config(
        directory, urls, database_url=url, settings={"poll_interval": "1h", "per_host": "32"}
    )
    engine = sa.create_engine(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [MONITOR, "--config", str(config), "--log-level", "WARNING", "run"],
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=(directory / f"instance-{i}.log").open("wb"),
            )
            for i in range(k)
        ]
        done = 0
        while time.monotonic() - started < 900:
            time.sleep(0.2)
            try:
                with engine.connect() as conn:
                    done = conn.execute(
                        sa.text("SELECT count(*) FROM feeds WHERE last_fetch IS NOT NULL")
                    ).scalar_one()
            except sa.exc.SQLAlchemyError:
                continue  # the schema is not there yet
            if done >= len(urls):
                break
        ended = time.monotonic()
        with engine.connect() as conn:
            shares = Counter(
                r for (r,) in conn.execute(sa.text("SELECT polled_by FROM feeds")) if r
            )
            articles = conn.execute(sa.text("SELECT count(*) FROM articles")).scalar_one()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return {
        "instances": k,
        "polled": done,
        "from_launch": ended - started,
        "articles": articles,
        "shares": sorted(shares.values(), reverse=True),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="distinct feed URLs (default 300)")
    ap.add_argument("--instances", default="1,2,3", help="instance counts (default 1,2,3)")
    ap.add_argument("--mix", choices=("real", "small"), default="real")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each answer waits")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    print_machine()
    compile_bytecode()
    files = corpus_files(args.mix)
    print(mix_summary(files, args.n))
    rows = []
    with (
        ServerProcess([f.path for f in files], args.n, args.latency) as server,
        workdir(args.keep, "scaleout-") as tmp,
    ):
        for k in (int(x) for x in args.instances.split(",")):
            print_load()
            r = run_instances(tmp / f"k{k}", server.urls, k)
            rows.append(
                [
                    k,
                    r["polled"],
                    f"{r['from_launch']:.1f}",
                    f"{args.n / float(r['from_launch']):.1f}",  # type: ignore[arg-type]
                    r["articles"],
                    "/".join(str(x) for x in r["shares"]),  # type: ignore[attr-defined]
                ]
            )
            print(table(HEADERS, rows[-1:]), flush=True)
    print()
    print(table(HEADERS, rows))


HEADERS = [
    "instances",
    "feeds polled",
    "s from launch",
    "feeds/s",
    "articles",
    "feeds per instance",
]

if __name__ == "__main__":
    main()
