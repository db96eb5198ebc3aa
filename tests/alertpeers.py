"""Real receivers on 127.0.0.1 for alert tests: an SMTP server and a webhook endpoint.

    SmtpPeer      aiosmtpd in its own thread; records every message; optional login,
                  STARTTLS or implicit TLS; stop() and start() again on the same port
    WebhookPeer   a threaded HTTP server; records every request; scripted statuses
                  (``respond(500, 200)``), an optional delay; stop/start on the same port
    TlsFiles      a throwaway self-signed certificate for 127.0.0.1 (made with openssl)

Fixtures ``smtp_peer``, ``webhook_peer``, ``tls_files``: a test module gets them by
binding them to the same names (``smtp_peer = alertpeers.smtp_peer``), which pytest
finds like fixtures defined there and linters do not flag as shadowed imports.
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    """Poll ``condition()`` until true (real I/O in another thread needs a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    """The decoded text/html part of a message."""
    return _part(message, "html")


def plain_of(message: EmailMessage) -> str:
    """The decoded text/plain part of a message."""
    return _part(message, "plain")


# --- TLS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts exactly this certificate (hostname 127.0.0.1 / localhost)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_tls_files(folder: Path) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert, key)


# --- SMTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None  # the username that authenticated, if any
    tls: bool  # whether the session was encrypted

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Recorder:
    def __init__(self, peer: SmtpPeer) -> None:
        self._peer = peer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if session.authenticated else None
        mail = ReceivedMail(
            envelope.mail_from,
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content or envelope.content),
            login,
            session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
        )
        self._peer.messages.append(mail)
        return "250 OK"


class _Controller(Controller):
    def factory(self) -> Any:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": on purpose, to test login over plain
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()  # type: ignore[no-untyped-call]  # aiosmtpd is untyped


class SmtpPeer:
    """A real SMTP server on 127.0.0.1 (aiosmtpd), restartable on the same port.

    ``credentials``: require AUTH with this (username, password); over plain text only
    when ``tls`` is None. ``tls``: offer STARTTLS (``implicit_tls=False``) or speak TLS
    from the first byte (``implicit_tls=True``).
    """

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        tls: TlsFiles | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.credentials = credentials
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.messages: list[ReceivedMail] = []
        self.logins: list[tuple[str, bool]] = []  # (username, accepted)
        self._controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        username, password = data.login.decode(), data.password.decode()
        accepted = (username, password) == self.credentials
        self.logins.append((username, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=data)

    def start(self) -> None:
        assert self._controller is None, "already running"
        options: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10.0}
        if self.credentials is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted all along
                auth_require_tls=self.tls is not None and not self.implicit_tls,
            )
        if self.tls is not None and self.implicit_tls:
            options["ssl_context"] = self.tls.server_context()
        elif self.tls is not None:
            options.update(tls_context=self.tls.server_context(), require_starttls=True)
        controller = _Controller(_Recorder(self), hostname=self.host, port=self.port, **options)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """The messages once at least ``count`` arrived (a daemon delivers in the background)."""
        assert wait_until(lambda: len(self.messages) >= count, timeout), self.messages
        return list(self.messages)

    def __enter__(self) -> SmtpPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Webhook --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookPeer:
    """A real HTTP receiver on 127.0.0.1, restartable on the same port.

    ``respond(500, 200)`` scripts the next statuses; after the script, ``default_status``.
    ``delay`` makes every answer wait that many seconds (for timeouts).
    """

    def __init__(self, *, path: str = "/hook") -> None:
        self.host = HOST
        self.port = free_port()
        self.path = path
        self.requests: list[ReceivedRequest] = []
        self.default_status = 200
        self.delay = 0.0
        self._script: deque[int] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def respond(self, *statuses: int) -> None:
        with self._lock:
            self._script.extend(statuses)

    def _next_status(self, request: ReceivedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else self.default_status

    def start(self) -> None:
        assert self._server is None, "already running"
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = peer._next_status(ReceivedRequest("POST", self.path, headers, body))
                if peer.delay:
                    time.sleep(peer.delay)
                reply = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """The requests once at least ``count`` arrived (a daemon delivers in the background)."""
        assert wait_until(lambda: len(self.requests) >= count, timeout), self.requests
        return list(self.requests)

    def __enter__(self) -> WebhookPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def smtp_peer() -> Iterator[SmtpPeer]:
    """A plain SMTP server without login, running."""
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def webhook_peer() -> Iterator[WebhookPeer]:
    """A webhook receiver answering 200, running."""
    with WebhookPeer() as peer:
        yield peer


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (skips only when openssl is missing)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))
