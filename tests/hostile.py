"""Hostile documents and process helpers for ``test_hostile.py`` and ``test_faults.py``.

Documents (built in memory, nothing hostile is stored in the repository)::

    gzip_bomb(size)            a gzip stream that inflates to ``size`` bytes (~1000:1)
    billion_laughs()           nested internal entities: 10**9 "lol"s if expanded
    quadratic_blowup()         one large internal entity referenced many times
    xxe_document(target)       an external general entity naming ``target`` (file or URL)
    xxe_parameter_document()   the same through an external parameter entity
    slow_parse_document()      small, but feedparser's fallback parser takes ~20 s on it
    random_binary(size)        seeded random bytes
    invalid_utf8_feed()        declares UTF-8, carries byte sequences that are not UTF-8
    html_without_feed()        a web page that advertises no feed
    rss_document(title, items) a small, valid RSS 2.0 document

Processes (the CLI always runs as ``python -m monitor`` in a subprocess)::

    write_config(path, ...)    a feeds.yaml (values written as JSON, which is YAML)
    run_monitor(config, ...)   one command, captured
    run_measured(config, ...)  one command with its wall time and peak memory
    MonitorDaemon(config)      ``monitor run`` with its log in a file; kill or stop it
    article_pairs(config)      the stored (feed, url) pairs, via ``monitor stories --all --json``
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import psutil

from tests.clirun import monitor_env

MB = 1024 * 1024

# ---------------------------------------------------------------------- documents

RSS_PROLOG = b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'


@functools.lru_cache(maxsize=4)
def gzip_bomb(inflated: int = 200 * MB, *, prefix: bytes = RSS_PROLOG) -> bytes:
    """A gzip member whose content is ``prefix`` followed by spaces, ``inflated`` bytes in all.

    Deflate tops out near 1032:1, so 200 MB of one repeated byte is about 200 KB on the
    wire. It is compressed in 1 MB steps, never held inflated in memory.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(prefix)]
    block = b" " * MB
    left = inflated - len(prefix)
    while left > 0:
        parts.append(packer.compress(block[: min(left, MB)]))
        left -= MB
    parts.append(packer.flush())
    return b"".join(parts)


def _entity_feed(slug: str, doctype: str, title: str, *, encoding: str = "utf-8") -> bytes:
    """A one-item RSS document with ``doctype`` as its internal DTD subset."""
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f"<!DOCTYPE rss [\n{doctype}\n]>\n"
        '<rss version="2.0"><channel><title>Entities</title>'
        "<link>https://hostile.example/</link><description>d</description>"
        f"<item><title>{title}</title><link>https://hostile.example/{slug}</link>"
        f"<description>{title}</description><guid>{slug}</guid></item>"
        "</channel></rss>\n"
    )
    return text.encode(encoding)


def billion_laughs(
    slug: str = "laughs", levels: int = 9, *, word: str = "lol", encoding: str = "utf-8"
) -> bytes:
    """The classic: each entity is ten of the previous one; ``&lol9;`` is 10**9 ``lol``."""
    decls = [f'<!ENTITY {word}0 "{word}">']
    refs = "".join(f"&{word}{{0}};" for _ in range(10))
    decls += [f'<!ENTITY {word}{i} "{refs.format(i - 1)}">' for i in range(1, levels + 1)]
    return _entity_feed(slug, "\n".join(decls), f"Laughs &{word}{levels};", encoding=encoding)


def quadratic_blowup(
    slug: str = "quadratic", size: int = 100_000, refs: int = 2_000, *, word: str = "HAHA"
) -> bytes:
    """One flat entity of ``size`` bytes referenced ``refs`` times (no nesting to detect)."""
    value = (word * (size // len(word) + 1))[:size]
    return _entity_feed(slug, f'<!ENTITY big "{value}">', "Big " + "&big;" * refs)


def xxe_document(slug: str, target: str) -> bytes:
    """An external general entity: ``target`` is a ``file://`` or ``http://`` URL."""
    return _entity_feed(slug, f'<!ENTITY xxe SYSTEM "{target}">', "Leak &xxe; here")


def xxe_parameter_document(slug: str, target: str) -> bytes:
    """An external parameter entity, expanded inside the DTD (the 'blind XXE' form)."""
    doctype = f'<!ENTITY % ext SYSTEM "{target}">\n%ext;'
    return _entity_feed(slug, doctype, "Parameter entity item")


def slow_parse_document(repeats: int = 100_000) -> bytes:
    """Well under any size limit (1.4 MB), but feedparser's fallback parser needs about
    20 s for it on a 2-core machine: an item opened over and over and never closed."""
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>'
        b"<item><title>" + b"<item><title>x" * repeats + b"</title>"
        b"<link>https://slow-parse.example/1</link></item></channel></rss>"
    )


def random_binary(size: int = 64 * 1024, seed: int = 6) -> bytes:
    return random.Random(seed).randbytes(size)


VALID_UTF8_TEXT = "Zürich – naïve “quoted”"


def invalid_utf8_feed() -> bytes:
    """A feed that declares UTF-8 and carries bytes that are not: stray continuation bytes,
    an overlong encoding, an encoded surrogate, a truncated sequence and Latin-1 text.

    Every title starts with valid UTF-8 text (:data:`VALID_UTF8_TEXT`), as a real feed
    with one damaged entry would.
    """
    bad = [b"\x80\x81", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"caf\xe9", b"\xff\xfe"]
    valid = VALID_UTF8_TEXT.encode()
    items = b"".join(
        b"<item><title>" + valid + b" " + str(i).encode() + b" " + junk + b" end</title>"
        b"<link>https://utf8.example/" + str(i).encode() + b"</link>"
        b"<description>text " + junk + b" more</description>"
        b"<guid>bad-utf8-" + str(i).encode() + b"</guid></item>"
        for i, junk in enumerate(bad)
    )
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        b"<title>Bad UTF-8</title><link>https://utf8.example/</link>"
        b"<description>d</description>" + items + b"</channel></rss>\n"
    )


def html_without_feed() -> bytes:
    return (
        b"<!DOCTYPE html>\n<html><head><title>Welcome</title>"
        b'<link rel="stylesheet" href="/site.css"></head>'
        b"<body><h1>Our news</h1><p>No feed here, read the site.</p></body></html>\n"
    )


@dataclass(frozen=True)
class Entry:
    guid: str
    title: str
    link: str
    summary: str = ""
    published: float | None = None  # epoch seconds; default: five minutes ago


def rss_document(title: str, entries: Iterable[Entry]) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<rss version="2.0"><channel><title>{escape(title)}</title>',
        "<link>https://example.org/</link><description>test</description>",
    ]
    for e in entries:
        when = e.published if e.published is not None else time.time() - 300
        parts.append(
            f'<item><guid isPermaLink="false">{escape(e.guid)}</guid>'
            f"<title>{escape(e.title)}</title><link>{escape(e.link)}</link>"
            f"<description>{escape(e.summary)}</description>"
            f"<pubDate>{format_datetime(datetime.fromtimestamp(when, UTC))}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


# ---------------------------------------------------------------------- config files


def write_config(
    path: Path,
    *,
    feeds: Sequence[str | Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    entities: Sequence[Mapping[str, Any]] = (),
    alerts: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write a feeds.yaml; every value is written as JSON (valid YAML), one key a line."""

    def block(items: Sequence[str | Mapping[str, Any]]) -> list[str]:
        lines = []
        for item in items:
            fields = {"url": item} if isinstance(item, str) else dict(item)
            for i, (key, value) in enumerate(fields.items()):
                lines.append(f"  {'- ' if i == 0 else '  '}{key}: {json.dumps(value)}")
        return lines

    lines = ["version: 1"]
    if settings:
        lines += ["settings:", *(f"  {k}: {json.dumps(v)}" for k, v in settings.items())]
    lines += ["feeds:", *block(feeds)] if feeds else ["feeds: []"]
    if entities:
        lines += ["entities:", *block(entities)]
    if alerts:
        lines += ["alerts:", *block(alerts)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------- processes


def monitor_argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", "--config", str(config), *args]


def child_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """``clirun.monitor_env()`` without ``MONITOR_CONFIG``; a ``None`` value in ``extra``
    removes that variable (a test of a missing ``${VAR}`` must not inherit it)."""
    env = monitor_env()
    env.pop("MONITOR_CONFIG", None)
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_monitor(
    config: Path, *args: str, timeout: float = 120, env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        monitor_argv(config, *args),
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
    )


def monitor_json(config: Path, *args: str) -> Any:
    res = run_monitor(config, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def article_pairs(config: Path) -> list[tuple[str, str]]:
    """Every stored article as (feed, url), duplicates kept (a list, not a set)."""
    stories = monitor_json(config, "stories", "--all")
    return [(a["feed"], a["url"]) for s in stories for a in s["articles"]]


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    max_rss: int  # bytes: the largest single process (kernel's own count, via wait4)
    tree_peak: int  # bytes: the largest sum over the process tree (sampled every 50 ms)
    stdout: str
    stderr: str


def run_measured(config: Path, *args: str, timeout: float = 600) -> Measured:
    """Run one command; measure wall time, the kernel's max RSS and the sampled tree RSS.

    Output goes to files (no pipe can fill up); the child is reaped with ``wait4`` so
    its rusage is its own, not that of every child this test session ever ran.
    """
    out_path = config.parent / f"measured-{time.monotonic_ns()}"
    with open(f"{out_path}.out", "wb") as out, open(f"{out_path}.err", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            monitor_argv(config, *args), cwd=config.parent, stdout=out, stderr=err, env=child_env()
        )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            watched = psutil.Process(proc.pid)
            while not done.is_set():
                peak = max(peak, tree_rss(watched))
                done.wait(0.05)
        except psutil.NoSuchProcess:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
        sampler.join()
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        returncode=proc.returncode,
        seconds=seconds,
        max_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
        tree_peak=peak,
        stdout=Path(f"{out_path}.out").read_text(errors="replace"),
        stderr=Path(f"{out_path}.err").read_text(errors="replace"),
    )


class MonitorDaemon:
    """``monitor run`` in a subprocess; its stderr is copied line by line into ``log_path``.

    The log travels through a pipe that a thread of the test drains, so the daemon never
    writes a file of its own for it (a test may limit the daemon's file sizes).
    ``kill()`` is a crash: SIGKILL to the daemon alone, as the OOM killer would send it;
    the pool processes it leaves behind are then ended by their pids.
    """

    _count = 0

    def __init__(self, config: Path, *, env: Mapping[str, str | None] | None = None) -> None:
        MonitorDaemon._count += 1
        self.log_path = config.parent / f"daemon-{MonitorDaemon._count}.log"
        self.proc = subprocess.Popen(
            monitor_argv(config, "--log-level", "debug", "run"),
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(env),
        )
        self._drain = threading.Thread(target=self._copy_log, daemon=True)
        self._drain.start()

    def _copy_log(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as pipe, open(self.log_path, "wb") as log:
            for line in pipe:
                log.write(line)
                log.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _descendants(self) -> list[psutil.Process]:
        try:
            return list(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the daemon mid-work; then end the orphans it left, by their pids."""
        orphans = self._descendants()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        _end(orphans, grace=1)
        self._drain.join(timeout=5)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the clean exit; the exit status. Pool processes still
        there a few seconds after it are ended by their pids (they should be gone)."""
        children = self._descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.log[-3000:]}") from None
        self._drain.join(timeout=5)
        _end(children, grace=5)
        return code

    def ensure_gone(self) -> None:
        """For ``finally`` blocks: whatever happened, leave no process behind."""
        if self.proc.poll() is None:
            self.kill()


def _end(processes: list[psutil.Process], grace: float) -> None:
    """Give ``processes`` (a daemon's pool) ``grace`` seconds to exit, then SIGKILL each."""
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def wait_until(condition: Callable[[], object], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())
