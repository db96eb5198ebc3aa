"""A real HTTP server on 127.0.0.1 for tests and benchmarks.

It serves two kinds of paths:

``/files/<relpath>`` and ``/copies/<i>/<relpath>``
    Files under ``root`` (default: the shared feed corpus), with a stable ``ETag``
    (a hash of the content) and ``Last-Modified`` (the file's mtime); a matching
    ``If-None-Match`` / ``If-Modified-Since`` gets ``304``. A gzip file (named
    ``*.gz``, or starting with the gzip magic bytes, as two corpus files do) is sent
    as stored with ``Content-Encoding: gzip``. ``/copies/<i>/`` makes any number of
    distinct URLs out of the same files (see :meth:`FeedServer.copy_urls`).

scripted routes
    ``server.route("/x", status=..., body=..., headers=..., delay=..., trickle=...,
    hang=True, endless=True, redirect_to=...)`` or ``server.route("/x", handler=fn)``
    where ``fn(request) -> Reply`` decides per request. A static 200 route whose
    headers carry ``ETag`` / ``Last-Modified`` answers conditional requests with 304.

Every request is recorded (method, path, headers, body), with counters of requests
and of concurrent requests per path, so tests can assert what a client sent and how
many requests it had in flight. Slow, hanging and endless replies run on their own
daemon threads and stop as soon as the server stops.

Usage::

    with FeedServer() as server:
        server.route("/feed", body=b"<rss/>", headers={"Content-Type": "text/xml"})
        url = server.url("/feed")

    feed_server = feed_server_fixture()      # in a test module: a pytest fixture

"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.conftest import FEEDS_DIR

CONTENT_TYPES: Mapping[str, str] = {
    ".xml": "text/xml",
    ".rss": "text/xml",
    ".atom": "text/xml",
    ".rdf": "text/xml",
    ".json": "application/feed+json",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".tsv": "text/tab-separated-values",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
GZIP_MAGIC = b"\x1f\x8b"
ENDLESS_CHUNK = b"<!-- endless -->" * 4096  # 64 KiB per write


@dataclass(frozen=True)
class Reply:
    """How the server answers a request on a scripted route.

    ``delay``: seconds to wait before answering. ``trickle``: send the body at this
    many bytes per second (``Content-Length`` is announced up front). ``hang``: read
    the request and never answer. ``endless``: send a 200 with no length and body
    bytes (``body`` repeated, or filler) until the client goes away.
    ``redirect_to``: send ``Location`` (with status 302 unless a 3xx is given).
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float | None = None
    hang: bool = False
    endless: bool = False
    redirect_to: str | None = None
    reason: str | None = None  # the status line's phrase; default: the standard one


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``headers`` keys are lower-case."""

    method: str
    target: str  # as sent: path and query
    path: str  # without the query
    headers: Mapping[str, str]
    body: bytes


Handler = Callable[[RecordedRequest], Reply]
Scope = Literal["session", "package", "module", "class", "function"]


class _Recorder:
    """Thread-safe log of requests and of concurrent requests per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_in_flight = 0
        self.total_peak = 0

    def enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.in_flight[request.path] += 1
            self.peak[request.path] = max(self.peak[request.path], self.in_flight[request.path])
            self.total_in_flight += 1
            self.total_peak = max(self.total_peak, self.total_in_flight)

    def leave(self, request: RecordedRequest) -> None:
        with self._lock:
            self.in_flight[request.path] -= 1
            self.total_in_flight -= 1

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.peak.clear()
            self.total_peak = self.total_in_flight

    def current(self, path: str | None) -> int:
        with self._lock:
            return self.total_in_flight if path is None else self.in_flight[path]

    def highest(self, path: str | None) -> int:
        with self._lock:
            return self.total_peak if path is None else self.peak[path]


@dataclass(frozen=True)
class _StaticFile:
    body: bytes
    etag: str
    last_modified: str
    content_type: str
    gzipped: bool


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging handler must not delay shutdown
    owner: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-reply are normal in these tests; anything else is shown."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FeedServer:
    """A threaded HTTP server on ``host`` (127.0.0.1) and an ephemeral port."""

    def __init__(self, root: Path | None = FEEDS_DIR, *, host: str = "127.0.0.1") -> None:
        self.root = root.resolve() if root is not None else None
        self.host = host
        self._routes: dict[str, Handler] = {}
        self._files: dict[tuple[Path, int, int], _StaticFile] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # TCP connections accepted so far (keep-alive checks)
        self._recorder = _Recorder()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.latency = 0.0  # seconds every static/copy answer waits (a distant server)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FeedServer:
        httpd = _Server((self.host, 0), _RequestHandler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: wake waiting handlers and cut every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (which starts with ``/``)."""
        return self.base_url + path

    def file_url(self, relpath: str | Path) -> str:
        """URL of a file under ``root``: ``/files/<relpath>``."""
        return self.url(f"/files/{quote(Path(relpath).as_posix())}")

    def copy_urls(self, relpaths: Sequence[str | Path], n: int) -> list[str]:
        """``n`` distinct URLs cycling through ``relpaths``: ``/copies/<i>/<relpath>``.

        Every URL serves the same bytes as ``/files/<relpath>``; useful to build
        benchmarks of many feeds out of a few files.
        """
        if not relpaths:
            raise ValueError("relpaths is empty")
        paths = [quote(Path(p).as_posix()) for p in relpaths]
        return [self.url(f"/copies/{i}/{paths[i % len(paths)]}") for i in range(n)]

    # -- scripted routes -----------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        status: int | None = None,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        trickle: float | None = None,
        hang: bool = False,
        endless: bool = False,
        redirect_to: str | None = None,
        handler: Handler | None = None,
    ) -> None:
        """Answer ``path`` (with or without query string) as described, or by ``handler``.

        Registering the same path again replaces the route.
        """
        if handler is None:
            reply = Reply(
                status=status if status is not None else (302 if redirect_to else 200),
                body=body.encode() if isinstance(body, str) else body,
                headers=dict(headers or {}),
                delay=delay,
                trickle=trickle,
                hang=hang,
                endless=endless,
                redirect_to=redirect_to,
            )
            handler = _static_handler(reply)
        with self._lock:
            self._routes[path] = handler

    def unroute(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    # -- what the clients did ------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests seen, oldest first; only those for ``path`` when given."""
        seen = self._recorder.snapshot()
        if path is None:
            return seen
        return [r for r in seen if path in (r.path, r.target)]

    def hits(self, path: str) -> int:
        return len(self.requests(path))

    def peak_concurrency(self, path: str | None = None) -> int:
        """The most requests in flight at once (for ``path``, or over all paths)."""
        return self._recorder.highest(path)

    def in_flight(self, path: str | None = None) -> int:
        return self._recorder.current(path)

    def reset_counters(self) -> None:
        """Forget recorded requests and peaks (routes stay)."""
        self._recorder.reset()

    # -- internals used by the handler -------------------------------------------------

    def _find_route(self, target: str, path: str) -> Handler | None:
        with self._lock:
            return self._routes.get(target) or self._routes.get(path)

    def _static(self, relpath: str) -> _StaticFile | None:
        if self.root is None:
            return None
        candidate = (self.root / unquote(relpath)).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        stat = candidate.stat()
        key = (candidate, stat.st_mtime_ns, stat.st_size)  # a rewritten file is re-read
        with self._lock:
            cached = self._files.get(key)
        if cached is None:
            cached = _load_static(candidate, int(stat.st_mtime))
            with self._lock:
                self._files[key] = cached
        return cached

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self.connections_opened += 1
            else:
                self._connections.discard(conn)

    def _wait(self, seconds: float | None) -> bool:
        """Sleep up to ``seconds`` (forever when None); True if the server is stopping."""
        return self._stopping.wait(seconds)


def _static_handler(reply: Reply) -> Handler:
    def handle(request: RecordedRequest) -> Reply:
        if reply.status == 200 and _not_modified(request, reply.headers):
            return replace(reply, status=304, body=b"")
        return reply

    return handle


def _not_modified(request: RecordedRequest, headers: Mapping[str, str]) -> bool:
    """Conditional GET semantics: If-None-Match wins over If-Modified-Since."""
    lower = {k.lower(): v for k, v in headers.items()}
    inm = request.headers.get("if-none-match")
    if inm is not None:
        etag = lower.get("etag")
        tags = [t.strip() for t in inm.split(",")]
        return etag is not None and (etag in tags or "*" in tags)
    ims = request.headers.get("if-modified-since")
    last_modified = lower.get("last-modified")
    if ims is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False


def _load_static(path: Path, mtime: int) -> _StaticFile:
    body = path.read_bytes()
    gzipped = path.suffix == ".gz" or body.startswith(GZIP_MAGIC)
    type_name = path.name[: -len(".gz")] if path.suffix == ".gz" else path.name
    content_type = CONTENT_TYPES.get(Path(type_name).suffix.lower(), DEFAULT_CONTENT_TYPE)
    return _StaticFile(
        body=body,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=formatdate(mtime, usegmt=True),
        content_type=content_type,
        gzipped=gzipped,
    )


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle plus delayed ACKs
    # add ~40 ms to every response on loopback
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log."""

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        target = self.path
        request = RecordedRequest(
            method=self.command,
            target=target,
            path=urlsplit(target).path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner._recorder.enter(request)
        try:
            self._answer(request)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            owner._recorder.leave(request)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, request: RecordedRequest) -> None:
        owner = self.server.owner
        handler = owner._find_route(request.target, request.path)
        if handler is not None:
            try:
                reply = handler(request)
            except Exception:  # a bug in a test's handler: show it, answer 500
                traceback.print_exc()
                reply = Reply(status=500, body=traceback.format_exc().encode())
            self._reply(reply)
            return
        relpath = _static_relpath(request.path)
        static = owner._static(relpath) if relpath is not None else None
        if static is None:
            self._reply(Reply(status=404, body=b"not found"))
            return
        headers = {"ETag": static.etag, "Last-Modified": static.last_modified}
        delay = owner.latency
        if _not_modified(request, headers):
            self._reply(Reply(status=304, headers=headers, delay=delay))
            return
        headers["Content-Type"] = static.content_type
        if static.gzipped:
            headers["Content-Encoding"] = "gzip"
        self._reply(Reply(body=static.body, headers=headers, delay=delay))

    def _reply(self, reply: Reply) -> None:
        owner = self.server.owner
        if reply.hang:
            owner._wait(None)
            self.close_connection = True
            return
        if reply.delay and owner._wait(reply.delay):
            self.close_connection = True
            return
        self.send_response_only(reply.status, reply.reason)
        given = {name.lower() for name in reply.headers}
        if "date" not in given:  # a route may fix Date, e.g. to test Retry-After dates
            self.send_header("Date", self.date_time_string())
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.redirect_to is not None:
            self.send_header("Location", reply.redirect_to)
        if reply.endless:
            self._send_endless(reply.body)
            return
        if "content-length" not in given:  # a route may lie about the length on purpose
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command == "HEAD" or reply.status in (204, 304):
            return
        if reply.trickle:
            self._send_trickle(reply.body, reply.trickle)
        else:
            self.wfile.write(reply.body)

    def _send_endless(self, body: bytes) -> None:
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = body * max(1, len(ENDLESS_CHUNK) // max(1, len(body))) if body else ENDLESS_CHUNK
        while not self.server.owner._stopping.is_set():
            self.wfile.write(chunk)

    def _send_trickle(self, body: bytes, rate: float) -> None:
        interval = 1.0 / rate
        started = time.monotonic()
        for i in range(len(body)):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            wait = started + (i + 1) * interval - time.monotonic()
            if wait > 0 and self.server.owner._wait(wait):
                self.close_connection = True
                return


def _static_relpath(path: str) -> str | None:
    """``/files/a/b.xml`` and ``/copies/7/a/b.xml`` -> ``a/b.xml``."""
    if path.startswith("/files/"):
        return path[len("/files/") :]
    if path.startswith("/copies/"):
        _, _, rest = path[len("/copies/") :].partition("/")
        return rest or None
    return None


def feed_server_fixture(
    root: Path | None = FEEDS_DIR, *, host: str = "127.0.0.1", scope: Scope = "function"
) -> Any:
    """Make a pytest fixture that yields a running :class:`FeedServer`.

    In a test module: ``feed_server = feed_server_fixture()``, then take
    ``feed_server`` as a test argument. ``scope="module"`` shares one server (and its
    routes and counters) between the module's tests.
    """

    def _fixture() -> Iterator[FeedServer]:
        with FeedServer(root, host=host) as server:
            yield server

    return pytest.fixture(scope=scope)(_fixture)
