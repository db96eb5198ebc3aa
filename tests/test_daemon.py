"""`monitor run` as a real subprocess: reload on edit, SIGTERM exit 0, lock, restart delivery."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.daemon import settle_heap
from tests import alertpeers
from tests.clirun import monitor, monitor_env
from tests.feedbuild import Item, LiveFeed, serve
from tests.feedserver import FeedServer

webhook_peer = alertpeers.webhook_peer


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


def start_daemon(cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", "feeds.yaml", "run"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=monitor_env(),
    )


def config_text(urls: list[str], channels: str = "") -> str:
    feeds = "\n".join(f"  - url: {u}" for u in urls)
    channels = channels or "  - name: log\n    type: log\n    path: alerts.jsonl\n"
    return (
        "version: 1\nsettings:\n  database: sqlite:///monitor.db\n  timeout: 3s\n"
        f"  alert_backlog: true\nfeeds:\n{feeds}\n"
        "entities:\n  - name: Wagner Group\n    aliases: [Wagner]\n"
        f"alerts:\n{channels}"
    )


def wait_for(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"daemon did not stop on SIGTERM:\n{err}") from None
    return proc.returncode, err


def test_run_picks_up_an_edited_config_and_exits_0_on_sigterm(server, tmp_path):
    first = LiveFeed("First", [Item("1", "Wagner convoy spotted", "On the M4.")])
    second = LiveFeed("Second", [Item("1", "Harbour reopens", "Ships return.")])
    u1, u2 = serve(server, "/first", first), serve(server, "/second", second)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(config_text([u1]))
    proc = start_daemon(tmp_path)
    try:
        assert wait_for(lambda: server.hits("/first") >= 1)
        # a second instance is refused, naming the holder's pid
        other = monitor("--config", "feeds.yaml", "poll", cwd=tmp_path)
        assert other.returncode == 1 and f"pid {proc.pid}" in other.stderr
        # an invalid edit is logged with its line and the running config kept
        cfg.write_text(config_text([u1]).replace("timeout: 3s", "timeuot: 3s"))
        time.sleep(2.5)
        # editors replace the file: write a new file and rename it over the old one
        tmp = tmp_path / "feeds.yaml.new"
        tmp.write_text(config_text([u1, u2]))
        os.replace(tmp, cfg)
        assert wait_for(lambda: server.hits("/second") >= 1), "new feed not polled after edit"
        assert wait_for(lambda: (tmp_path / "alerts.jsonl").exists())
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "timeuot" in err and ":4:" in err  # the rejected edit, with its line
    stories = json.loads(
        monitor("stories", "--all", "--json", "--config", "feeds.yaml", cwd=tmp_path).stdout
    )
    assert {a["title"] for s in stories for a in s["articles"]} == {
        "Wagner convoy spotted",
        "Harbour reopens",
    }


def test_alert_pending_across_restart_is_delivered_exactly_once(server, tmp_path, webhook_peer):
    feed = LiveFeed("Wire", [Item("1", "Wagner fighters leave Rostov", "Convoys seen.")])
    url = serve(server, "/wire", feed)
    hook = f"  - name: hook\n    type: webhook\n    url: {webhook_peer.url}\n"
    (tmp_path / "feeds.yaml").write_text(config_text([url], hook))
    webhook_peer.stop()  # the receiver is down during the first run
    proc = start_daemon(tmp_path)
    try:
        assert wait_for(lambda: server.hits("/wire") >= 1)

        def pending() -> list[dict]:
            out = monitor("alerts", "--json", "--config", "feeds.yaml", cwd=tmp_path).stdout
            return [a for a in json.loads(out) if a["state"] == "pending"]

        assert wait_for(lambda: bool(pending()) and pending()[0]["attempts"] >= 1)
    finally:
        assert stop(proc)[0] == 0
    [alert] = pending()
    webhook_peer.start()
    proc = start_daemon(tmp_path)
    try:
        received = webhook_peer.wait_for(1, timeout=60)
        time.sleep(3)  # further delivery passes must not send it again
    finally:
        assert stop(proc)[0] == 0
    assert [r.header("X-Monitor-Delivery") for r in webhook_peer.requests] == [alert["id"]]
    assert received[0].json()["entity"]["name"] == "Wagner Group"
    out = json.loads(monitor("alerts", "--json", "--config", "feeds.yaml", cwd=tmp_path).stdout)
    assert [a["state"] for a in out] == ["sent"]


def test_read_commands_on_a_new_database(tmp_path):
    (tmp_path / "feeds.yaml").write_text(config_text(["https://example.org/rss"]))
    res = monitor("stories", "--json", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout) == []
    res = monitor("--config", "feeds.yaml", "alerts", "--json", cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout) == []
    res = monitor("feeds", "--json", "--config", "feeds.yaml", cwd=tmp_path)
    [feed] = json.loads(res.stdout)
    assert feed["url"] == "https://example.org/rss" and feed["last_fetch"] is None
    res = monitor("--help", cwd=tmp_path)
    assert res.returncode == 0 and "stories" in res.stdout
    for cmd in [
        "run",
        "poll",
        "validate",
        "feeds",
        "stories",
        "alerts",
        "test-alert",
        "import-opml",
        "export-opml",
    ]:
        assert monitor(cmd, "--help", cwd=tmp_path).returncode == 0


def test_validate_reports_a_typo_with_its_line(tmp_path):
    (tmp_path / "feeds.yaml").write_text(
        config_text(["https://example.org/rss"]).replace("  timeout: 3s", "  timout: 3s")
    )
    res = monitor("validate", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "feeds.yaml:4:" in res.stderr and "timout" in res.stderr
    assert "Traceback" not in res.stderr
    res = monitor("poll", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_test_alert_reports_outcome(tmp_path, webhook_peer):
    hook = f"  - name: hook\n    type: webhook\n    url: {webhook_peer.url}\n"
    (tmp_path / "feeds.yaml").write_text(config_text(["https://example.org/rss"], hook))
    res = monitor("test-alert", "hook", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert webhook_peer.requests[-1].header("X-Monitor-Event") == "test"
    webhook_peer.respond(500)
    res = monitor("test-alert", "hook", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 1 and "500" in res.stdout + res.stderr


def test_healthz_and_metrics_are_served(server, tmp_path):
    import httpx

    feed = LiveFeed("Wire", [Item("1", "Wagner convoy spotted", "On the M4.")])
    url = serve(server, "/wire", feed)
    port = alertpeers.free_port()
    text = config_text([url]).replace(
        "  timeout: 3s\n", f"  timeout: 3s\n  http: {{host: 127.0.0.1, port: {port}}}\n"
    )
    (tmp_path / "feeds.yaml").write_text(text)
    proc = start_daemon(tmp_path)
    try:
        assert wait_for(lambda: server.hits("/wire") >= 1)

        def healthy() -> bool:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json()["feeds_ok"] == 1

        assert wait_for(healthy)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert 'monitor_fetches_total{status="200"} 1' in metrics
        assert "monitor_articles_stored_total 1" in metrics
    finally:
        assert stop(proc)[0] == 0


def test_sighup_reloads_even_when_the_file_looks_unchanged(server, tmp_path):
    """SIGHUP reloads by itself: the edit keeps size and mtime, so the watcher cannot see it."""
    first = LiveFeed("First", [Item("1", "Wagner convoy spotted", "On the M4.")])
    other = LiveFeed("Other", [Item("1", "Harbour reopens", "Ships return.")])
    u1, u2 = serve(server, "/aaaa", first), serve(server, "/bbbb", other)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(config_text([u1]))
    proc = start_daemon(tmp_path)
    try:
        assert wait_for(lambda: server.hits("/aaaa") >= 1)
        stat = cfg.stat()
        cfg.write_text(config_text([u2]))  # same length: only the path differs
        os.utime(cfg, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(2.5)
        assert server.hits("/bbbb") == 0
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: server.hits("/bbbb") >= 1), "SIGHUP did not reload"
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "reloaded (SIGHUP)" in err


class _Cycle:
    """Garbage only the cyclic collector frees, like the YAML parser's node tree."""

    def __init__(self) -> None:
        self.me = self


def test_start_up_garbage_is_freed_not_frozen() -> None:
    gc.disable()
    try:
        garbage = _Cycle()
        gone = weakref.ref(garbage)
        del garbage
        settle_heap()
        assert gone() is None  # frozen, it would have stayed for the process's life
    finally:
        gc.unfreeze()
        gc.enable()
