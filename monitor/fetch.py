"""The fetch stage: one HTTP GET per feed, turned into a :class:`FetchResult`.

Pipeline: ``Fetcher.fetch(url)`` -> follow redirects (recording a permanent one) ->
read and decode the body within ``max_bytes`` -> if the answer is an HTML page that
advertises a feed, fetch that feed once. Every failure (DNS, refused, TLS, timeout,
too big, HTTP 4xx/5xx) is returned as a value with a precise ``error``; only
cancellation propagates.

Limits: ``concurrency`` requests in flight overall and ``per_host`` per host:port;
``timeout`` bounds the network time of one URL's redirect chain, body included (time
spent queueing for a slot does not count); ``max_bytes`` bounds the body both as
received and as decompressed. Decompression is done here, incrementally and capped,
so a compression bomb never inflates past the limit in memory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Protocol
from urllib.parse import urljoin
from urllib.request import getproxies

import brotli
import httpx

from monitor.discover import find_feed_links, looks_like_html
from monitor.model import FetchResult

DEFAULT_USER_AGENT = "feed-monitor/0.1.0"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)
ACCEPT_ENCODING = "gzip, deflate, br"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECT_CODES = frozenset({301, 308})
NO_BODY_CODES = frozenset({204, 304})
DRAIN_LIMIT = 64 * 1024  # an unread body up to this size is read to keep its connection
RETRY_AFTER_CODES = frozenset({429, 503})
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class _TooLargeError(Exception):
    """The body went past ``max_bytes`` (received or decompressed)."""


class _DecodeError(Exception):
    """The body could not be decompressed."""


@dataclass(frozen=True)
class _Redirect:
    location: str
    permanent: bool


@dataclass
class _Budget:
    """Network seconds left for one URL's redirect chain."""

    remaining: float


# -- body decoding -------------------------------------------------------------------


class _Decoder(Protocol):
    def decode(self, data: bytes, limit: int) -> bytes:
        """Decode ``data``; return at most about ``limit + 1`` bytes (more than
        ``limit`` tells the caller the body is too large; the rest is dropped)."""

    def flush(self) -> bytes: ...


class _Zlib:
    """gzip (every member) or deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, gzip: bool) -> None:
        self._name = "gzip" if gzip else "deflate"
        self._wbits = zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(self._wbits)
        self._fresh = True  # the current inflater has not decoded anything yet
        self._members = 1
        self._finished = False

    def decode(self, data: bytes, limit: int) -> bytes:
        pieces: list[bytes] = []
        size = 0
        while data and not self._finished and size <= limit:
            if self._inflater.eof:
                self._next_member()
                continue
            try:
                piece = self._inflater.decompress(data, limit + 1 - size)
            except zlib.error as exc:
                self._recover(exc)
                continue
            pieces.append(piece)
            size += len(piece)
            self._fresh = False
            data = self._inflater.unconsumed_tail or (
                self._inflater.unused_data if self._inflater.eof else b""
            )
        return b"".join(pieces)

    def flush(self) -> bytes:
        return b"" if self._finished else self._inflater.flush()

    def _next_member(self) -> None:
        if self._name == "deflate":
            self._finished = True  # bytes after a deflate stream are ignored
            return
        self._inflater = zlib.decompressobj(self._wbits)
        self._fresh = True
        self._members += 1

    def _recover(self, exc: zlib.error) -> None:
        if self._fresh and self._members > 1:
            self._finished = True  # padding or junk after the last gzip member
        elif self._fresh and self._wbits == zlib.MAX_WBITS:
            self._wbits = -zlib.MAX_WBITS  # raw deflate
            self._inflater = zlib.decompressobj(self._wbits)
        else:
            raise _DecodeError(f"invalid {self._name} body: {exc}") from exc


class _Brotli:
    def __init__(self) -> None:
        self._inflater = brotli.Decompressor()

    def decode(self, data: bytes, limit: int) -> bytes:
        try:
            out = bytearray(self._inflater.process(data, output_buffer_limit=limit + 1))
            while len(out) <= limit and not self._inflater.can_accept_more_data():
                out += self._inflater.process(b"", output_buffer_limit=limit + 1 - len(out))
        except brotli.error as exc:
            raise _DecodeError(f"invalid br body: {exc}") from exc
        return bytes(out)

    def flush(self) -> bytes:
        return b""


def _decoders(content_encoding: str | None) -> list[_Decoder]:
    """Decoders to apply in order (the reverse of the order the codings were applied)."""
    decoders: list[_Decoder] = []
    for coding in reversed((content_encoding or "").lower().split(",")):
        coding = coding.strip()
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            decoders.append(_Zlib(gzip=True))
        elif coding == "deflate":
            decoders.append(_Zlib(gzip=False))
        elif coding == "br":
            decoders.append(_Brotli())
        else:
            raise _DecodeError(f"unsupported Content-Encoding: {coding}")
    return decoders  # empty: identity


# -- pure helpers --------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``30.0`` -> ``30s``, ``0.5`` -> ``500ms``, ``90.0`` -> ``90s`` (as config writes them)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """``10 * 2**20`` or ``10 * 10**6`` -> ``10MB``; falls back to bytes."""
    for unit, names in ((3, "GB"), (2, "MB"), (1, "KB")):
        for base in (1024**unit, 1000**unit):
            if size >= base and size % base == 0:
                return f"{size // base}{names}"
    return f"{size} bytes"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _parse_http_date(value)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


def parse_max_age(cache_control: str | None) -> float | None:
    """``max-age`` seconds from a ``Cache-Control`` value, if present and valid."""
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.strip().lower() == "max-age":
            value = value.strip().strip('"')
            return float(value) if value.isdigit() else None
    return None


def _parse_http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend(e for e in (current.__context__, current.__cause__) if e is not None)


def describe_network_error(exc: BaseException, host: str) -> str:
    """A short, precise reason for a request that got no HTTP answer."""
    for cause in _exception_chain(exc):
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed for host {host}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS error: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {exc}"
    return f"network error: {exc or type(exc).__name__}"


def _http_error(status: int, reason: str) -> str:
    """``HTTP 404 Not Found``: the standard phrase when there is one, else the server's."""
    return f"HTTP {status} {_PHRASES.get(status, reason)}".rstrip()


def _lower_headers(headers: httpx.Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


# -- the fetcher ---------------------------------------------------------------------


class Fetcher:
    """Fetches feeds over one pooled ``httpx.AsyncClient``; use as ``async with``.

    ``transport`` replaces the network (tests, or a proxy setup); ``max_redirects``
    is the number of redirects followed before giving up.
    """

    def __init__(
        self,
        *,
        concurrency: int = 32,
        per_host: int = 2,
        timeout: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
        user_agent: str = DEFAULT_USER_AGENT,
        max_redirects: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if concurrency < 1 or per_host < 1 or timeout <= 0 or max_bytes < 1:
            raise ValueError("concurrency, per_host, timeout and max_bytes must be positive")
        self.concurrency = concurrency
        self.per_host = per_host
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.max_redirects = max_redirects
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        transport, mounts = self._transport, None
        if transport is None and not any(getproxies()):
            # TLS set-up (reading the CA bundle: ~30 ms) waits for the first https URL
            transport = httpx.AsyncHTTPTransport(verify=False, limits=limits)  # http:// only
            mounts = {"https://": _Deferred(lambda: httpx.AsyncHTTPTransport(limits=limits))}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout),
            limits=limits,
            headers={
                "User-Agent": self.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            transport=transport,
            mounts=mounts,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """Fetch ``url`` conditionally; never raises except on cancellation.

        ``etag`` / ``last_modified`` are the validators stored from the last 200 (or
        304); the result carries the ones to store next. When ``url`` answers with an
        HTML page advertising a feed, the first such feed is fetched (with the same
        validators) and its result returned, ``discovered_from`` set to ``url``.
        """
        validators = _conditional_headers(etag, last_modified)
        page = await self._follow(url, validators)
        if page.status is None or not 200 <= page.status < 300 or page.content is None:
            return page
        if not looks_like_html(page.content_type, page.content):
            return page
        links = find_feed_links(page.content, page.final_url or url)
        if not links:
            return page
        feed = await self._follow(links[0], validators)
        return replace(feed, discovered_from=url)

    async def _follow(self, url: str, validators: Mapping[str, str]) -> FetchResult:
        """GET ``url``, following up to ``max_redirects`` redirects within one budget."""
        budget = _Budget(self.timeout)
        visited = {url}
        current = url
        permanent: str | None = None
        only_permanent = True
        for _ in range(self.max_redirects + 1):
            outcome = await self._exchange(current, validators, budget)
            if isinstance(outcome, FetchResult):
                return replace(outcome, url=url, final_url=current, permanent_redirect=permanent)
            only_permanent = only_permanent and outcome.permanent
            if only_permanent:
                permanent = outcome.location
            if outcome.location in visited:
                return _failure(url, current, "redirect loop")
            visited.add(outcome.location)
            current = outcome.location
        return _failure(url, current, "too many redirects")

    async def _exchange(
        self, url: str, validators: Mapping[str, str], budget: _Budget
    ) -> FetchResult | _Redirect:
        """One request and response, within the concurrency limits and the time budget."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            return _failure(url, url, f"invalid URL: {exc}")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return _failure(url, url, f"unsupported URL: {url}")
        host_key = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
        host_slots = self._host_slots.setdefault(host_key, asyncio.Semaphore(self.per_host))
        loop = asyncio.get_running_loop()
        async with host_slots, self._slots:
            started = loop.time()
            try:
                async with asyncio.timeout(budget.remaining):
                    return await self._request(url, parsed, validators)
            except (TimeoutError, httpx.TimeoutException):
                return _failure(url, url, f"timeout after {format_duration(self.timeout)}")
            except (httpx.HTTPError, OSError) as exc:
                return _failure(url, url, describe_network_error(exc, parsed.host))
            finally:
                budget.remaining -= loop.time() - started

    async def _request(
        self, url: str, parsed: httpx.URL, validators: Mapping[str, str]
    ) -> FetchResult | _Redirect:
        if self._client is None:
            raise RuntimeError("Fetcher used outside 'async with'")
        # the parsed URL, not the string: httpx would parse it a second time (~0.1 ms)
        request = self._client.build_request("GET", parsed, headers=validators)
        response = await self._client.send(request, stream=True)
        try:
            outcome = await self._interpret(url, response, validators)
            await _drain(response)
            return outcome
        finally:
            await response.aclose()

    async def _interpret(
        self, url: str, response: httpx.Response, validators: Mapping[str, str]
    ) -> FetchResult | _Redirect:
        status = response.status_code
        location = response.headers.get("location")
        if status in REDIRECT_CODES and location:
            return _Redirect(urljoin(url, location), status in PERMANENT_REDIRECT_CODES)
        headers = _lower_headers(response.headers)
        answer = FetchResult(
            url=url,
            status=status,
            content_type=headers.get("content-type"),
            headers=headers,
            max_age=parse_max_age(headers.get("cache-control")),
        )
        if status == 304:
            return replace(
                answer,
                not_modified=True,
                etag=headers.get("etag") or validators.get("If-None-Match"),
                last_modified=headers.get("last-modified") or validators.get("If-Modified-Since"),
            )
        if not 200 <= status < 300:
            return replace(
                answer,
                error=_http_error(status, response.reason_phrase),
                gone=status == 410,
                retry_after=_retry_after(status, headers),
            )
        try:
            content = await self._read_body(response)
        except _TooLargeError:
            return _failure(url, url, f"response larger than {format_size(self.max_bytes)}")
        except _DecodeError as exc:
            return _failure(url, url, str(exc))
        return replace(
            answer,
            content=content,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
        )

    async def _read_body(self, response: httpx.Response) -> bytes:
        """Read raw bytes and decode them, never holding more than ``max_bytes`` (+1)."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _TooLargeError
        # A pre-read response (httpx.MockTransport in tests) was already decoded by httpx.
        preread = response.is_stream_consumed
        decoders = [] if preread else _decoders(response.headers.get("content-encoding"))
        body = bytearray()
        received = 0
        async for chunk in _raw_chunks(response):
            received += len(chunk)
            if received > self.max_bytes:
                raise _TooLargeError
            body += self._decode(decoders, chunk, len(body))
        tail = b""
        for decoder in decoders:
            tail = decoder.decode(tail, self.max_bytes - len(body)) + decoder.flush()
        body += tail
        if len(body) > self.max_bytes:
            raise _TooLargeError
        return bytes(body)

    def _decode(self, decoders: list[_Decoder], chunk: bytes, have: int) -> bytes:
        for decoder in decoders:
            chunk = decoder.decode(chunk, self.max_bytes - have)
            if have + len(chunk) > self.max_bytes:
                raise _TooLargeError
        return chunk


class _Deferred(httpx.AsyncBaseTransport):
    """A transport made on its first request."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._make = make
        self._transport: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            self._transport = self._make()
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


async def _drain(response: httpx.Response) -> None:
    """Read the small unread body of a 304, redirect or error so that its connection
    goes back to the pool: closing an unread response closes the connection, and a
    re-poll of 304s would then pay a TCP (and TLS) handshake per feed."""
    if response.is_stream_consumed:
        return
    declared = response.headers.get("content-length", "")
    if response.status_code not in NO_BODY_CODES and not (
        declared.isdigit() and int(declared) <= DRAIN_LIMIT
    ):
        return
    with suppress(httpx.HTTPError, OSError):  # the connection is then closed, as before
        async for _ in response.aiter_raw():
            pass


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as received (or, for a pre-read response, as httpx holds it)."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """Validators to send; a non-ASCII one (a broken server's) is dropped, not sent mangled."""
    headers = {}
    if etag and etag.isascii():
        headers["If-None-Match"] = etag
    if last_modified and last_modified.isascii():
        headers["If-Modified-Since"] = last_modified
    return headers


def _retry_after(status: int, headers: Mapping[str, str]) -> float | None:
    """Retry-After on 429/503, measured from the server's own Date when it sent one."""
    if status not in RETRY_AFTER_CODES:
        return None
    server_now = _parse_http_date(headers.get("date", ""))
    now = server_now if server_now is not None else datetime.now(UTC)
    return parse_retry_after(headers.get("retry-after"), now)


def _failure(url: str, final_url: str, error: str) -> FetchResult:
    """A fetch that got no usable HTTP answer."""
    return FetchResult(url=url, status=None, final_url=final_url, error=error)
