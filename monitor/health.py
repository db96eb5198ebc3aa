"""``/healthz`` and ``/metrics`` over HTTP, inside the daemon's event loop.

The verdict is a pure function of a ``HealthStatus`` snapshot; the server is a minimal
HTTP/1.1 responder (GET and HEAD, one request per connection, bounded request head,
read and write timeouts) so it needs no framework and never blocks the loop.

    server = await start_health_server("127.0.0.1", 8787, status_provider)
    ...
    await server.close()

``status_provider`` is called on the event loop for every ``/healthz`` request: it
should read state the daemon already holds in memory, not query the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from urllib.parse import urlsplit

from monitor.errors import MonitorError
from monitor.logs import log_event
from monitor.metrics import METRICS

log = logging.getLogger(__name__)

STALL_AFTER = timedelta(seconds=60)  # no scheduler tick for this long: unhealthy
OVERDUE_FACTOR = 3  # a feed more than this many intervals past its next poll: unhealthy

MAX_HEAD_BYTES = 8192  # request line plus headers
MAX_HEADERS = 100
READ_TIMEOUT = 10.0  # seconds to receive the request head
WRITE_TIMEOUT = 10.0  # seconds to send the response
MAX_CONNECTIONS = 64  # past this, new connections are closed at once

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class HealthStatus:
    """What the daemon knows about its own health at ``now`` (all datetimes aware)."""

    last_tick: datetime | None  # last scheduler tick; None before the first one
    feeds_ok: int  # enabled feeds whose last poll succeeded
    feeds_failing: int  # enabled feeds whose last poll failed
    feeds_overdue: int  # enabled feeds for which ``is_overdue`` holds
    outbox_pending: int  # alerts waiting for delivery
    now: datetime
    started_at: datetime | None = None  # the daemon's start: a grace period before the first tick


def is_overdue(next_poll: datetime, interval: timedelta, now: datetime) -> bool:
    """True when a feed is more than ``OVERDUE_FACTOR`` times its interval past its next poll."""
    return now - next_poll > OVERDUE_FACTOR * interval


def health_verdict(status: HealthStatus) -> tuple[int, dict[str, object]]:
    """The HTTP status (200 or 503) and JSON body for ``/healthz``. Pure."""
    problems: list[str] = []
    since = status.last_tick or status.started_at
    if since is None:
        problems.append("the scheduler has not ticked yet")
    elif status.now - since >= STALL_AFTER:
        seconds = int((status.now - since).total_seconds())
        problems.append(f"the scheduler has not ticked for {seconds}s")
    if status.feeds_overdue > 0:
        problems.append(
            f"{status.feeds_overdue} enabled feed(s) more than {OVERDUE_FACTOR}x"
            " their interval overdue"
        )
    body: dict[str, object] = {
        "status": "unhealthy" if problems else "ok",
        "now": _rfc3339(status.now),
        "last_tick": _rfc3339(status.last_tick) if status.last_tick else None,
        "feeds_ok": status.feeds_ok,
        "feeds_failing": status.feeds_failing,
        "feeds_overdue": status.feeds_overdue,
        "outbox_pending": status.outbox_pending,
        "problems": problems,
    }
    return (503 if problems else 200), body


class HealthServer:
    """A running health server; ``await close()`` stops it and drops open connections."""

    def __init__(self, server: asyncio.Server, handler: _Handler) -> None:
        self._server = server
        self._handler = handler
        host, port = server.sockets[0].getsockname()[:2]
        self.host: str = host
        self.port: int = port  # the bound port (useful when asked for port 0)

    async def close(self) -> None:
        self._server.close()
        await self._handler.cancel_all()
        await self._server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_health_server(
    host: str,
    port: int,
    status_provider: Callable[[], HealthStatus],
    *,
    render_metrics: Callable[[], str] = METRICS.render,
    read_timeout: float = READ_TIMEOUT,
) -> HealthServer:
    """Listen on host:port; raises ``MonitorError`` when the address cannot be bound."""
    handler = _Handler(status_provider, render_metrics, read_timeout)
    try:
        server = await asyncio.start_server(handler.handle, host, port, limit=MAX_HEAD_BYTES)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MonitorError(f"cannot serve /healthz on {host}:{port}: {reason}") from exc
    health = HealthServer(server, handler)
    log_event(log, logging.INFO, "http_listening", host=health.host, port=health.port)
    return health


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Handler:
    def __init__(
        self,
        status_provider: Callable[[], HealthStatus],
        render_metrics: Callable[[], str],
        read_timeout: float,
    ) -> None:
        self._status_provider = status_provider
        self._render_metrics = render_metrics
        self._read_timeout = read_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if len(self._tasks) <= MAX_CONNECTIONS:
                await self._serve_one(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell it
        finally:
            writer.close()
            with suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._tasks.discard(task)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            method, path = await asyncio.wait_for(_read_head(reader), self._read_timeout)
            head_only = method == "HEAD"
            response = self._route(method, path)
        except _BadRequest as exc:
            response = _text(exc.status)
        except TimeoutError:
            response = _text(408)
        writer.write(_serialize(response, head_only))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    def _route(self, method: str, path: str) -> _Response:
        if path not in ("/healthz", "/metrics"):
            return _text(404)
        if method not in ("GET", "HEAD"):
            return _Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        try:
            if path == "/metrics":
                return _Response(200, self._render_metrics().encode(), METRICS_CONTENT_TYPE)
            code, body = health_verdict(self._status_provider())
        except Exception as exc:  # a bug in the provider: say so loudly, answer 500
            log_event(log, logging.ERROR, "http_handler_failed", path=path, exc_info=exc)
            return _text(500)
        payload = (json.dumps(body, ensure_ascii=False) + "\n").encode()
        return _Response(code, payload, "application/json")


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Read the request line and headers; return (method, path). Headers are not needed."""
    lines: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readline()
        except ValueError as exc:  # one line longer than the stream limit
            raise _BadRequest(431) from exc
        if not line.endswith(b"\n"):
            raise ConnectionResetError("connection closed mid-request")
        total += len(line)
        if total > MAX_HEAD_BYTES or len(lines) > MAX_HEADERS:
            raise _BadRequest(431)
        if line.strip(b"\r\n"):
            lines.append(line)
        elif lines:
            break  # the empty line that ends the head (leading empty lines are ignored)
    parts = lines[0].decode("latin-1").strip("\r\n").split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _BadRequest(400)
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise _BadRequest(505)
    if target.startswith(("http://", "https://")):
        target = urlsplit(target).path or "/"
    return method, target.split("?", 1)[0]


def _text(status: int) -> _Response:
    return _Response(status, (HTTPStatus(status).phrase.lower() + "\n").encode())


def _serialize(response: _Response, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
