"""Logging: one line per event on stderr, as human-readable text or as JSON lines.

Events carry their context as fields, never baked into the message::

    log_event(log, logging.INFO, "polled", feed=url, status=304)

    text: 2026-11-28T07:00:00Z INFO polled feed=https://example.org/rss status=304
    json: {"ts": "2026-11-28T07:00:00.123Z", "level": "INFO", "logger": "monitor.fetch",
           "event": "polled", "feed": "https://example.org/rss", "status": 304}

Text values containing spaces, quotes, ``=`` or control characters are quoted with
backslash escapes, so a value can never break the line or forge another field.
Fields passed with plain ``logger.info(msg, extra={...})`` are rendered the same way.
A traceback follows its event line in text mode and is the ``exc`` key in JSON mode.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")

# Libraries that log every request or job run at INFO: quiet unless debugging.
_CHATTY_LOGGERS = ("httpx", "httpcore", "apscheduler")

_FIELDS_ATTR = "monitor_fields"
_CORE_KEYS = ("ts", "level", "logger", "event")
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    _FIELDS_ATTR,
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES = re.compile(r'[\s"=\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
_TO_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f-\x9f\u2028\u2029]')
_BAD_KEY_CHARS = re.compile(r"[^\w.-]")
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def setup_logging(level: str, json_mode: bool) -> None:
    """Send every log record to stderr, one line per event, at ``level`` and above.

    Installs one handler on the root logger, replacing one installed by an earlier call
    (handlers added by others, such as pytest's, are left alone).
    """
    numeric = _parse_level(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if json_mode else TextFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    chatty_level = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)


def log_event(
    logger: logging.Logger,
    level: int | str,
    event: str,
    /,
    *,
    exc_info: bool | BaseException = False,
    **fields: object,
) -> None:
    """Log ``event`` with ``fields`` as context (``key=value`` in text, JSON keys in JSON)."""
    numeric = level if isinstance(level, int) else _parse_level(level)
    logger.log(numeric, event, exc_info=exc_info, extra={_FIELDS_ATTR: fields}, stacklevel=2)


class TextFormatter(logging.Formatter):
    """``2026-11-28T07:00:00Z INFO polled feed=... status=304``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record.created, millis=False),
            record.levelname,
            _CONTROL.sub(_escape_char, record.getMessage()),
        ]
        parts.extend(f"{_key(k)}={_text_value(v)}" for k, v in _fields(record).items())
        line = " ".join(parts)
        trace = _trace(self, record)
        if trace:
            line += "\n" + "\n".join("    " + row for row in trace.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event``, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "ts": _timestamp(record.created, millis=True),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            name = _key(key)
            while name in obj:  # a field never overwrites ts/level/logger/event
                name += "_"
            obj[name] = _json_value(value)
        trace = _trace(self, record)
        if trace:
            obj["exc"] = trace
        return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the event, never to stdout."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _parse_level(level: str) -> int:
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(name.upper()))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
    extra = getattr(record, _FIELDS_ATTR, None)
    if isinstance(extra, Mapping):
        fields.update(extra)
    return fields


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


def _timestamp(created: float, *, millis: bool) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(key: str) -> str:
    return _BAD_KEY_CHARS.sub("_", key) or "_"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _text_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _rfc3339(value) if isinstance(value, datetime) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + _TO_ESCAPE.sub(_escape_char, text) + '"'
    return text


def _json_value(value: Any) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    return str(value)
