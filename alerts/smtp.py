"""Email channel: one message per alert (or digest) over SMTP.

stdlib ``smtplib`` runs in a worker thread (``asyncio.to_thread``), so the event loop
never blocks and no extra dependency is needed. ``security`` is ``none`` (plain, as
the server offers), ``starttls`` (upgrade, required) or ``ssl`` (implicit TLS);
login happens only when a username is set. Certificates are verified against the
system's trust store unless an ``ssl_context`` is given.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from alerts.render import render_email
from alerts.senders import MessageRejected, redact
from monitor.errors import DeliveryError

SECURITY_MODES = ("none", "starttls", "ssl")

log = logging.getLogger(__name__)


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        to: Sequence[str],
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"smtp security must be one of {', '.join(SECURITY_MODES)}")
        self._host = host
        self._port = port
        self._sender = sender
        self._to = list(to)
        self._security = security
        self._username = username or None
        self._password = password
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._where = f"SMTP {host}:{port}"

    def __repr__(self) -> str:
        return (
            f"SmtpSender(host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, login={self._username is not None})"
        )

    def message(self, event: str, delivery_id: str, body: Mapping[str, Any]) -> EmailMessage:
        return render_email(
            body, sender=self._sender, to=self._to, event=event, delivery_id=delivery_id
        )

    async def send(self, event: str, delivery_id: str, body: Mapping[str, Any]) -> None:
        message = self.message(event, delivery_id, body)
        await asyncio.to_thread(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        """Send in this (worker) thread; every failure becomes one DeliveryError."""
        try:
            self._transmit(message)
        except smtplib.SMTPDataError as exc:
            text = self._reply(exc.smtp_code, exc.smtp_error)
            kind = MessageRejected if exc.smtp_code >= 500 else DeliveryError
            raise kind(f"{self._where}: message refused: {text}") from None
        except smtplib.SMTPAuthenticationError as exc:
            text = self._reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(f"{self._where}: login refused: {text}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise DeliveryError(f"{self._where}: every recipient refused ({refused})") from None
        except smtplib.SMTPResponseException as exc:
            text = self._reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(f"{self._where}: {text}") from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{self._where}: connection closed by the server") from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"{self._where}: {self._clean(str(exc))}") from None
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            raise DeliveryError(f"{self._where}: TLS failed ({reason})") from None
        except TimeoutError:
            raise DeliveryError(f"{self._where}: no answer within {self._timeout:g}s") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DeliveryError(f"{self._where}: {self._clean(reason)}") from None

    def _transmit(self, message: EmailMessage) -> None:
        with self._connect() as client:
            if self._security == "starttls":
                client.starttls(context=self._context())
            if self._username is not None:
                client.login(self._username, self._password or "")
            refused = client.send_message(message)
        if refused:
            # Some recipients took it: raising would re-send to them, so this is delivered.
            log.warning(
                "email_recipients_refused smtp=%s:%s refused=%s",
                self._host,
                self._port,
                ",".join(sorted(refused)),
            )

    def _connect(self) -> smtplib.SMTP:
        if self._security == "ssl":
            return smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
                context=self._context(),
            )
        return smtplib.SMTP(
            self._host, self._port, local_hostname=self._local_hostname, timeout=self._timeout
        )

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _reply(self, code: int, text: bytes | str) -> str:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self._clean(f"{code} {' '.join(text.split())}")

    def _clean(self, text: str) -> str:
        return redact(text, [self._password])
