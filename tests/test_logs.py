"""Log lines: text and JSON formats, one line per event, stderr only."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from monitor.logs import log_event, setup_logging

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<level>[A-Z]+) (?P<rest>.*)$")
log = logging.getLogger("monitor.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "apscheduler")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, chatty_level in chatty.items():
        logging.getLogger(name).setLevel(chatty_level)


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_text_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", json_mode=False)
    log_event(log, logging.INFO, "polled", feed="https://example.org/rss", status=304)
    out, err = capsys.readouterr()
    assert out == ""
    [line] = lines(err)
    match = TEXT_LINE.match(line)
    assert match, line
    assert match["level"] == "INFO"
    assert match["rest"] == "polled feed=https://example.org/rss status=304"


def test_text_values_are_quoted_and_cannot_break_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("debug", json_mode=False)
    log_event(
        log,
        "warning",
        "fetch_failed",
        feed="Mehr News",
        error='timeout after 30s\nforged="yes"',
        empty="",
        missing=None,
        ok=True,
        at=datetime(2026, 11, 28, 7, 0, tzinfo=UTC),
        ratio=0.5,
    )
    [line] = lines(capsys.readouterr().err)
    assert line.split(" ", 2)[1] == "WARNING"
    assert line.split(" ", 2)[2] == (
        'fetch_failed feed="Mehr News" error="timeout after 30s\\nforged=\\"yes\\"" empty=""'
        " missing=null ok=true at=2026-11-28T07:00:00Z ratio=0.5"
    )


def test_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", json_mode=True)
    log_event(
        log,
        logging.INFO,
        "story_new",
        story="s_1",
        reason="similar",
        score=0.82,
        at=datetime(2026, 11, 28, 7, 0, tzinfo=UTC),
        entities=("Wagner Group",),
    )
    out, err = capsys.readouterr()
    assert out == ""
    [line] = lines(err)
    record = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("ts"))
    assert record == {
        "level": "INFO",
        "logger": "monitor.test",
        "event": "story_new",
        "story": "s_1",
        "reason": "similar",
        "score": 0.82,
        "at": "2026-11-28T07:00:00Z",
        "entities": ["Wagner Group"],
    }


def test_json_fields_never_overwrite_the_core_keys(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", json_mode=True)
    log.info("plain %s", "message", extra={"level": "forged", "feed": "x"})
    record = json.loads(capsys.readouterr().err)
    assert record["level"] == "INFO"
    assert record["level_"] == "forged"
    assert record["event"] == "plain message"
    assert record["feed"] == "x"


def test_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", json_mode=True)
    try:
        raise ValueError("bad\nthing")
    except ValueError as exc:
        log_event(log, logging.ERROR, "bug", exc_info=exc, where="test")
    [line] = lines(capsys.readouterr().err)
    record = json.loads(line)
    assert record["event"] == "bug" and record["where"] == "test"
    assert "ValueError: bad" in record["exc"]

    setup_logging("info", json_mode=False)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("crashed")
    err = capsys.readouterr().err
    first, *trace = lines(err)
    assert first.endswith(" ERROR crashed")
    assert trace and all(row.startswith("    ") for row in trace)
    assert "ValueError: boom" in trace[-1]


def test_level_filters_and_a_newline_in_a_message_stays_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("warning", json_mode=False)
    log_event(log, logging.INFO, "quiet")
    log.warning("two\nlines")
    [line] = lines(capsys.readouterr().err)
    assert line.endswith(" WARNING two\\nlines")


def test_setup_twice_installs_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", json_mode=False)
    setup_logging("info", json_mode=True)
    log_event(log, logging.INFO, "once")
    [line] = lines(capsys.readouterr().err)
    assert json.loads(line)["event"] == "once"


def test_chatty_libraries_are_quiet_unless_debugging() -> None:
    setup_logging("info", json_mode=False)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    setup_logging("debug", json_mode=False)
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("verbose", json_mode=False)


def test_a_real_process_writes_logs_to_stderr_only() -> None:
    code = (
        "import logging; from monitor.logs import setup_logging, log_event;"
        "setup_logging('info', json_mode=False);"
        "log_event(logging.getLogger('x'), logging.INFO, 'polled', feed='f', status=200);"
        "print('output')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "output\n"
    assert done.stderr.endswith(" INFO polled feed=f status=200\n")
