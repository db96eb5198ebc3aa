"""Webhook channel: POST the JSON body, signed with HMAC-SHA256 when a secret is set.

Headers: ``Content-Type: application/json``, ``X-Monitor-Event``, ``X-Monitor-Delivery``
and, with a secret, ``X-Monitor-Signature: sha256=<hex HMAC-SHA256 of the raw body>``;
configured extra headers go first, so they cannot replace these. Any 2xx is delivered;
anything else, or no answer within ``timeout`` (the whole request), raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from alerts.render import json_bytes
from alerts.senders import MessageRejected, redact
from monitor.errors import DeliveryError

USER_AGENT = "feed-monitor/0.1.0"
# The receiver refused this body; other bodies may pass, so the channel goes on.
REJECTED_STATUSES = frozenset({400, 413, 415, 422})


class _HideWebhookUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; a webhook URL often carries a token
    in its path or query (Slack, Discord, ...), so for those only the origin is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and str(args[1]) in self.urls:
            origin = str(args[1]).split("/", 3)[:3]  # scheme, "", host[:port] (no userinfo)
            host = origin[-1].rpartition("@")[2]
            record.args = (args[0], f"{origin[0]}//{host}/***", *args[2:])
        return True


_hide_urls = _HideWebhookUrls()
logging.getLogger("httpx").addFilter(_hide_urls)


def signature(secret: str, payload: bytes) -> str:
    """The ``X-Monitor-Signature`` value: ``sha256=<hex HMAC-SHA256 of payload>``."""
    digest = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    """Sends each body as one POST; ``transport`` lets tests or callers swap the I/O."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        with contextlib.suppress(httpx.InvalidURL):  # such a URL is never requested nor logged
            _hide_urls.urls.add(str(httpx.URL(url)))
        self._secret = secret or None
        self._extra = dict(headers or {})
        self._timeout = timeout
        self._transport = transport
        parts = urlsplit(url)
        self._where = parts.hostname or "?"
        if parts.port is not None:
            self._where = f"{self._where}:{parts.port}"

    def __repr__(self) -> str:
        return f"WebhookSender(host={self._where!r}, signed={self._secret is not None})"

    def headers(self, event: str, delivery_id: str, payload: bytes) -> dict[str, str]:
        """Every header of one request: extras first, then those of the contract."""
        headers = {"User-Agent": USER_AGENT, **self._extra}
        headers["Content-Type"] = "application/json"
        headers["X-Monitor-Event"] = event
        headers["X-Monitor-Delivery"] = delivery_id
        if self._secret is not None:
            headers["X-Monitor-Signature"] = signature(self._secret, payload)
        return headers

    async def send(self, event: str, delivery_id: str, body: Mapping[str, Any]) -> None:
        payload = json_bytes(body)
        try:
            status = await self._post(self.headers(event, delivery_id, payload), payload)
        except (TimeoutError, httpx.TimeoutException):
            raise DeliveryError(
                f"no answer from webhook {self._where} within {self._timeout:g}s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            reason = self._redacted(f"{type(exc).__name__}: {exc}")
            raise DeliveryError(f"webhook {self._where} unreachable ({reason})") from None
        if 200 <= status < 300:
            return
        if status in REJECTED_STATUSES:
            raise MessageRejected(f"HTTP {status} from webhook")
        raise DeliveryError(f"HTTP {status} from webhook")

    async def _post(self, headers: dict[str, str], payload: bytes) -> int:
        async with (
            asyncio.timeout(self._timeout),
            httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            ) as client,
        ):
            response = await client.post(self._url, content=payload, headers=headers)
            return response.status_code

    def _redacted(self, text: str) -> str:
        parts = urlsplit(self._url)
        candidates = [self._secret, self._url, parts.path if len(parts.path) > 1 else None]
        candidates += [parts.query, parts.password, *self._extra.values()]
        secrets: list[str] = [s for s in candidates if s]
        secrets.sort(key=len, reverse=True)  # a longer secret first: it may hold a shorter one
        return redact(text, secrets)
