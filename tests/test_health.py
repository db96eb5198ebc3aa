"""/healthz verdicts (pure) and the HTTP server on a real loopback port."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
import pytest

from monitor.errors import MonitorError
from monitor.health import (
    HealthServer,
    HealthStatus,
    health_verdict,
    is_overdue,
    start_health_server,
)
from monitor.metrics import METRICS, MonitorMetrics, render

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
T = TypeVar("T")


def status(**changes: object) -> HealthStatus:
    values: dict[str, object] = {
        "last_tick": NOW - timedelta(seconds=5),
        "feeds_ok": 10,
        "feeds_failing": 2,
        "feeds_overdue": 0,
        "outbox_pending": 3,
        "now": NOW,
    }
    values.update(changes)
    return HealthStatus(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("health", "code"),
    [
        (status(), 200),
        (status(feeds_failing=50), 200),  # failing feeds are recorded, not a daemon fault
        (status(last_tick=NOW - timedelta(seconds=59)), 200),
        (status(last_tick=NOW - timedelta(seconds=60)), 503),
        (status(last_tick=NOW - timedelta(hours=2)), 503),
        (status(last_tick=None), 503),
        (status(last_tick=None, started_at=NOW - timedelta(seconds=10)), 200),
        (status(last_tick=None, started_at=NOW - timedelta(seconds=90)), 503),
        (status(feeds_overdue=1), 503),
        (status(last_tick=NOW + timedelta(seconds=1)), 200),  # clock step backwards
    ],
)
def test_verdict(health: HealthStatus, code: int) -> None:
    got, body = health_verdict(health)
    assert got == code
    assert body["status"] == ("ok" if code == 200 else "unhealthy")
    assert bool(body["problems"]) == (code == 503)


def test_verdict_body() -> None:
    code, body = health_verdict(status(last_tick=datetime(2026, 11, 28, 6, 59, 55, tzinfo=UTC)))
    assert code == 200
    assert body == {
        "status": "ok",
        "now": "2026-11-28T07:00:00Z",
        "last_tick": "2026-11-28T06:59:55Z",
        "feeds_ok": 10,
        "feeds_failing": 2,
        "feeds_overdue": 0,
        "outbox_pending": 3,
        "problems": [],
    }


def test_verdict_names_every_problem() -> None:
    _, body = health_verdict(status(last_tick=NOW - timedelta(seconds=61), feeds_overdue=2))
    assert body["problems"] == [
        "the scheduler has not ticked for 61s",
        "2 enabled feed(s) more than 3x their interval overdue",
    ]


@pytest.mark.parametrize(
    ("late", "overdue"),
    [
        (timedelta(0), False),
        (timedelta(minutes=30), False),
        (timedelta(minutes=30, seconds=1), True),
    ],
)
def test_overdue_means_more_than_three_intervals_late(late: timedelta, overdue: bool) -> None:
    assert is_overdue(NOW - late, timedelta(minutes=10), NOW) is overdue


# --- the server ---------------------------------------------------------------------------


def serve(
    scenario: Callable[[HealthServer], Awaitable[T]],
    provider: Callable[[], HealthStatus] = status,
    **options: object,
) -> T:
    async def main() -> T:
        server = await start_health_server("127.0.0.1", 0, provider, **options)  # type: ignore[arg-type]
        async with server:
            return await scenario(server)

    return asyncio.run(main())


async def get(server: HealthServer, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return await client.request(method, f"http://127.0.0.1:{server.port}{path}")


async def raw(server: HealthServer, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return answer


def test_healthz_ok() -> None:
    response = serve(lambda server: get(server, "/healthz"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["last_tick"] == "2026-11-28T06:59:55Z"
    assert (body["feeds_ok"], body["feeds_failing"], body["feeds_overdue"]) == (10, 2, 0)
    assert body["outbox_pending"] == 3


def test_healthz_unhealthy_is_503() -> None:
    stalled = status(last_tick=NOW - timedelta(minutes=5))
    response = serve(lambda server: get(server, "/healthz?verbose=1"), lambda: stalled)
    assert response.status_code == 503
    assert response.json()["problems"] == ["the scheduler has not ticked for 300s"]


def test_metrics_in_prometheus_text_format() -> None:
    metrics = MonitorMetrics()
    metrics.fetches_total.inc(status=304)
    response = serve(lambda server: get(server, "/metrics"), render_metrics=metrics.render)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'monitor_fetches_total{status="304"} 1\n' in response.text
    assert "# TYPE monitor_cycle_duration_seconds summary\n" in response.text


def test_metrics_default_to_the_process_registry() -> None:
    response = serve(lambda server: get(server, "/metrics"))
    assert "# TYPE monitor_fetches_total counter" in response.text


def test_unknown_path_is_404_and_other_methods_405() -> None:
    async def scenario(server: HealthServer) -> tuple[httpx.Response, ...]:
        return (
            await get(server, "/"),
            await get(server, "/healthz/x"),
            await get(server, "/healthz", "POST"),
        )

    missing, nested, post = serve(scenario)
    assert (missing.status_code, nested.status_code) == (404, 404)
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


def test_head_has_headers_and_no_body() -> None:
    answer = serve(lambda server: raw(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: " in head and b"Connection: close" in head
    assert body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", b"HTTP/1.1 431 "),
        (b"nonsense\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /healthz SPDY/3\r\n\r\n", b"HTTP/1.1 505 "),
        (b"\r\nGET /healthz HTTP/1.0\n\n", b"HTTP/1.1 200 "),
        (b"GET http://127.0.0.1/metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 "),
    ],
)
def test_malformed_and_oversized_requests(request_bytes: bytes, status_line: bytes) -> None:
    answer = serve(lambda server: raw(server, request_bytes))
    assert answer.startswith(status_line)


def test_a_silent_client_is_cut_off() -> None:
    async def scenario(server: HealthServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and then nothing
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    assert serve(scenario, read_timeout=0.2).startswith(b"HTTP/1.1 408 ")


def test_a_failing_provider_is_a_500_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    def provider() -> HealthStatus:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return status()

    async def scenario(server: HealthServer) -> tuple[int, int]:
        first = await get(server, "/healthz")
        second = await get(server, "/healthz")
        return first.status_code, second.status_code

    assert serve(scenario, provider) == (500, 200)
    assert "http_handler_failed" in caplog.text


def test_close_drops_open_connections() -> None:
    async def main() -> None:
        server = await start_health_server("127.0.0.1", 0, status)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.close(), 2)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        with pytest.raises(httpx.ConnectError):
            await get(server, "/healthz")

    asyncio.run(main())


def test_a_port_in_use_is_a_monitor_error() -> None:
    async def main() -> None:
        async with await start_health_server("127.0.0.1", 0, status) as first:
            with pytest.raises(MonitorError, match="cannot serve"):
                await start_health_server("127.0.0.1", first.port, status)

    asyncio.run(main())


def test_body_is_json_with_a_trailing_newline() -> None:
    answer = serve(lambda server: raw(server, b"GET /healthz HTTP/1.1\r\n\r\n"))
    body = answer.partition(b"\r\n\r\n")[2]
    assert body.endswith(b"\n")
    assert json.loads(body)["status"] == "ok"


# --- the metrics registry /metrics serves ---------------------------------------------------

LABEL = r'[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{LABEL}(,{LABEL})*\}})? \S+$")


def test_every_family_has_help_and_type_and_samples_parse() -> None:
    metrics = MonitorMetrics()
    metrics.fetches_total.inc(status=200)
    metrics.fetches_total.inc(3, status="timeout")
    metrics.alerts_sent_total.inc(channel='desk "hook"\\1\n')
    metrics.alerts_failed_total.inc(channel="desk-email")
    metrics.articles_stored_total.inc(12)
    metrics.cycle_duration_seconds.observe(2.0)
    metrics.cycle_duration_seconds.observe(0.25)
    text = metrics.render()

    assert text.endswith("\n")
    typed: list[str] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.append(line.split()[2])
        elif not line.startswith("# HELP "):
            assert SAMPLE.match(line), line
            assert line.split("{")[0].split(" ")[0].startswith(typed[-1])
    assert typed == [
        "monitor_fetches_total",
        "monitor_parse_failures_total",
        "monitor_articles_stored_total",
        "monitor_alerts_sent_total",
        "monitor_alerts_failed_total",
        "monitor_cycle_duration_seconds",
        "monitor_cycle_duration_seconds_last",
    ]
    assert 'monitor_fetches_total{status="200"} 1\n' in text
    assert 'monitor_fetches_total{status="timeout"} 3\n' in text
    assert 'monitor_alerts_sent_total{channel="desk \\"hook\\"\\\\1\\n"} 1\n' in text
    assert "monitor_parse_failures_total 0\n" in text
    assert "monitor_articles_stored_total 12\n" in text
    assert "monitor_cycle_duration_seconds_sum 2.25\n" in text
    assert "monitor_cycle_duration_seconds_count 2\n" in text
    assert "monitor_cycle_duration_seconds_last 0.25\n" in text


def test_counters_check_their_labels_and_only_go_up() -> None:
    metrics = MonitorMetrics()
    with pytest.raises(ValueError):
        metrics.fetches_total.inc()
    with pytest.raises(ValueError):
        metrics.fetches_total.inc(status=200, host="x")
    with pytest.raises(ValueError):
        metrics.parse_failures_total.inc(-1)
    with pytest.raises(ValueError):
        metrics.counter("monitor_fetches_total", "again")


def test_counters_are_thread_safe() -> None:
    metrics = MonitorMetrics()

    def work() -> None:
        for _ in range(5000):
            metrics.fetches_total.inc(status=200)
            metrics.cycle_duration_seconds.observe(1.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.fetches_total.value(status=200) == 40_000
    assert metrics.cycle_duration_seconds.snapshot()[:2] == (40_000.0, 40_000)


def test_module_level_render_and_reset() -> None:
    METRICS.reset()
    METRICS.parse_failures_total.inc()
    assert "monitor_parse_failures_total 1\n" in render()
    METRICS.reset()
    assert "monitor_parse_failures_total 0\n" in render()
    assert "monitor_cycle_duration_seconds_last NaN\n" in render()
