"""The command line as users run it: exit codes, JSON output, OPML, logging."""

from __future__ import annotations

import json

from tests.clirun import monitor

CONFIG = """# my feeds
version: 1
settings:
  database: sqlite:///monitor.db
feeds:
  # the wire
  - url: https://wire.example/rss
    name: Wire
entities:
  - name: Wagner Group
alerts:
  - name: log
    type: log
"""

OPML = """<?xml version="1.0"?>
<opml version="2.0"><head><title>x</title></head><body>
  <outline text="World">
    <outline type="rss" text="Mehr News" xmlUrl="https://en.mehrnews.com/rss"/>
    <outline type="rss" text="Wire again" xmlUrl="https://wire.example/rss"/>
  </outline>
</body></opml>
"""


def test_import_and_export_opml_keep_comments(tmp_path):
    (tmp_path / "feeds.yaml").write_text(CONFIG)
    (tmp_path / "in.opml").write_text(OPML)
    res = monitor("import-opml", "in.opml", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "added https://en.mehrnews.com/rss" in res.stdout
    assert "skipped (already present) https://wire.example/rss" in res.stdout
    text = (tmp_path / "feeds.yaml").read_text()
    assert "# my feeds" in text and "# the wire" in text
    assert monitor("validate", "--config", "feeds.yaml", cwd=tmp_path).returncode == 0
    res = monitor("export-opml", "--config", "feeds.yaml", cwd=tmp_path)
    assert res.returncode == 0
    assert 'xmlUrl="https://en.mehrnews.com/rss"' in res.stdout and 'version="2.0"' in res.stdout


def test_log_json_and_global_options_after_the_command(tmp_path):
    (tmp_path / "feeds.yaml").write_text(
        CONFIG.replace("https://wire.example/rss", "http://127.0.0.1:9/rss")
    )
    res = monitor(
        "poll", "--config", "feeds.yaml", "--log-json", "--deliver-timeout", "5s", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # logs go to stderr only
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert any("poll_failed" in e["event"] for e in events), res.stderr
    res = monitor("feeds", "--json", "--config", "feeds.yaml", cwd=tmp_path)
    [feed] = json.loads(res.stdout)
    assert feed["last_error"] == "connection refused" and feed["consecutive_errors"] == 1
    host, _, pid = feed["polled_by"].rpartition(":")  # the instance that polled it last
    assert host and pid.isdigit()
    res = monitor("feeds", "--config", "feeds.yaml", cwd=tmp_path)
    assert f"by={feed['polled_by']}" in res.stdout


def test_usage_errors_exit_2(tmp_path):
    (tmp_path / "feeds.yaml").write_text(CONFIG)
    assert (
        monitor("stories", "--since", "soon", "--config", "feeds.yaml", cwd=tmp_path).returncode
        == 2
    )
    assert monitor("nonsense", cwd=tmp_path).returncode == 2
    assert monitor("test-alert", "nope", "--config", "feeds.yaml", cwd=tmp_path).returncode == 2
    missing = monitor("validate", "--config", "absent.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
