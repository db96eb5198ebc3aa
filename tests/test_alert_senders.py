"""Senders against real receivers on 127.0.0.1: SMTP (aiosmtpd), a webhook, a log file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import Coroutine
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from alerts.deliver import send_test
from alerts.logfile import LogSender
from alerts.render import JsonBody, json_bytes, story_body
from alerts.senders import DigestSchedule, MessageRejected, policy_for, sender_for
from alerts.smtp import SmtpSender
from alerts.webhook import WebhookSender
from monitor.errors import DeliveryError
from monitor.model import ArticleSnapshot, OutboxAlert, StorySnapshot
from tests import alertpeers
from tests.alertpeers import SmtpPeer, TlsFiles, WebhookPeer, html_of, plain_of

# The real peers' fixtures, by name: pytest finds fixtures in a test module's namespace.
smtp_peer = alertpeers.smtp_peer
webhook_peer = alertpeers.webhook_peer
tls_files = alertpeers.tls_files

T = TypeVar("T")
T0 = datetime(2026, 11, 28, 7, 1, 2, tzinfo=UTC)
PASSWORD = "hunter2-smtp-password"
SECRET = "whsec-signing-secret-123"
TOKEN = "Bearer header-token-456"


def body_with(title: str = "Wagner moves", url: str = "https://news.example.org/1") -> JsonBody:
    alert = OutboxAlert(
        "al_0001", "desk", "story.new", "Wagner Group", ("Wagner PMC",), "s_1", None, T0, 0,
        "pending", None, None,
    )  # fmt: skip
    article = ArticleSnapshot("a_1", title, url, "Mehr News", T0 - timedelta(minutes=5), "Text.")
    return story_body(alert, StorySnapshot("s_1", title, T0, T0, 1, (article,)))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def smtp_sender(peer: SmtpPeer, **options: Any) -> SmtpSender:
    options.setdefault("sender", "monitor@example.org")
    options.setdefault("to", ["desk@example.org"])
    options.setdefault("timeout", 5.0)
    return SmtpSender(peer.host, peer.port, **options)


# --- email ----------------------------------------------------------------------------


def test_email_arrives_with_the_contract_structure(smtp_peer: SmtpPeer) -> None:
    evil = "Wagner <script>alert(1)</script> moves"
    body = body_with(evil, url="javascript:alert(1)")
    run(smtp_sender(smtp_peer, to=["desk@example.org", "b@example.org"]).send(
        "story.new", "al_0001", body
    ))  # fmt: skip

    [mail] = smtp_peer.messages
    assert mail.mail_from == "monitor@example.org"
    assert mail.rcpt_tos == ("desk@example.org", "b@example.org")
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == f"[monitor] Wagner Group: {evil}"
    assert message["Message-ID"] == "<al_0001@feed-monitor>"
    assert message["X-Monitor-Delivery"] == "al_0001"
    assert message["X-Monitor-Event"] == "story.new"
    html = html_of(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "href=" not in html.split("<body", 1)[1]  # javascript: stays text
    assert evil in plain_of(message)


def test_email_with_login_over_plain_smtp() -> None:
    with SmtpPeer(credentials=("monitor", PASSWORD)) as peer:
        run(smtp_sender(peer, username="monitor", password=PASSWORD).send(
            "story.new", "al_0001", body_with()
        ))  # fmt: skip
        assert [m.login for m in peer.messages] == ["monitor"]


def test_refused_login_names_the_reason_not_the_password() -> None:
    with SmtpPeer(credentials=("monitor", PASSWORD)) as peer:
        sender = smtp_sender(peer, username="monitor", password="wrong-" + PASSWORD)
        with pytest.raises(DeliveryError) as caught:
            run(sender.send("story.new", "al_0001", body_with()))
    assert "login refused: 535" in str(caught.value)
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(sender)
    assert peer.messages == []


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "ssl"])
def test_email_over_tls_with_login(tls_files: TlsFiles, implicit: bool) -> None:
    with SmtpPeer(credentials=("monitor", PASSWORD), tls=tls_files, implicit_tls=implicit) as peer:
        sender = smtp_sender(
            peer,
            security="ssl" if implicit else "starttls",
            username="monitor",
            password=PASSWORD,
            ssl_context=tls_files.client_context(),
        )
        run(sender.send("story.new", "al_0001", body_with()))
        [mail] = peer.messages
    assert mail.tls and mail.login == "monitor"
    assert mail.message["X-Monitor-Delivery"] == "al_0001"


def test_untrusted_certificate_is_refused(tls_files: TlsFiles) -> None:
    with SmtpPeer(tls=tls_files) as peer:
        with pytest.raises(DeliveryError, match="TLS failed"):
            run(smtp_sender(peer, security="starttls").send("story.new", "al_1", body_with()))
        assert peer.messages == []


def test_starttls_required_but_not_offered(smtp_peer: SmtpPeer) -> None:
    with pytest.raises(DeliveryError, match="STARTTLS"):
        run(smtp_sender(smtp_peer, security="starttls").send("story.new", "al_1", body_with()))
    assert smtp_peer.messages == []


def test_smtp_server_down_is_a_delivery_error(smtp_peer: SmtpPeer) -> None:
    smtp_peer.stop()
    sender = smtp_sender(smtp_peer, username="monitor", password=PASSWORD)
    with pytest.raises(DeliveryError, match=f"SMTP 127.0.0.1:{smtp_peer.port}: Connection refused"):
        run(sender.send("story.new", "al_1", body_with()))


# --- webhook --------------------------------------------------------------------------


def test_webhook_posts_the_body_signed_with_the_secret(webhook_peer: WebhookPeer) -> None:
    body = body_with()
    sender = WebhookSender(webhook_peer.url, secret=SECRET, headers={"Authorization": TOKEN})
    run(sender.send("story.new", "al_0001", body))

    [request] = webhook_peer.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.body == json_bytes(body)
    assert request.json() == body
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Monitor-Event") == "story.new"
    assert request.header("X-Monitor-Delivery") == "al_0001"
    assert request.header("Authorization") == TOKEN
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    signature = request.header("X-Monitor-Signature")
    assert signature is not None
    assert hmac.compare_digest(signature, f"sha256={expected}")


def test_webhook_without_secret_is_unsigned_and_extras_cannot_replace_contract_headers(
    webhook_peer: WebhookPeer,
) -> None:
    extras = {"X-Monitor-Event": "forged", "X-Team": "desk"}
    run(WebhookSender(webhook_peer.url, headers=extras).send("digest", "dg_1", {"id": "dg_1"}))
    [request] = webhook_peer.requests
    assert request.header("X-Monitor-Signature") is None
    assert request.header("X-Monitor-Event") == "digest"
    assert request.header("X-Team") == "desk"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, DeliveryError), (503, DeliveryError), (404, DeliveryError), (429, DeliveryError),
     (301, DeliveryError), (422, MessageRejected), (413, MessageRejected)],
)  # fmt: skip
def test_webhook_non_2xx_raises(webhook_peer: WebhookPeer, status: int, error: type) -> None:
    webhook_peer.respond(status)
    with pytest.raises(error) as caught:
        run(WebhookSender(webhook_peer.url).send("story.new", "al_1", body_with()))
    assert str(caught.value) == f"HTTP {status} from webhook"
    assert type(caught.value) is error


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_any_2xx_is_delivered(webhook_peer: WebhookPeer, status: int) -> None:
    webhook_peer.respond(status)
    run(WebhookSender(webhook_peer.url).send("story.new", "al_1", body_with()))


def test_webhook_timeout_and_refusal_keep_secrets_out(webhook_peer: WebhookPeer) -> None:
    url = webhook_peer.url + "/T0KEN-in-path-789?key=query-secret-000"
    sender = WebhookSender(url, secret=SECRET, headers={"Authorization": TOKEN}, timeout=0.3)
    webhook_peer.delay = 1.0
    with pytest.raises(DeliveryError) as slow:
        run(sender.send("story.new", "al_1", body_with()))
    webhook_peer.delay = 0.0
    webhook_peer.stop()
    with pytest.raises(DeliveryError) as down:
        run(sender.send("story.new", "al_1", body_with()))
    assert str(slow.value) == f"no answer from webhook 127.0.0.1:{webhook_peer.port} within 0.3s"
    assert f"webhook 127.0.0.1:{webhook_peer.port} unreachable" in str(down.value)
    for text in (str(slow.value), str(down.value), repr(sender)):
        for secret in (SECRET, TOKEN, "T0KEN-in-path-789", "query-secret-000"):
            assert secret not in text


# --- log ------------------------------------------------------------------------------


def test_log_channel_appends_one_json_line_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sender = LogSender(path)
    first, second = body_with("First\nline"), body_with("Second")
    run(sender.send("story.new", "al_1", first))
    run(sender.send("story.new", "al_2", second))
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [first, second]
    assert lines[0] == json_bytes(first)


def test_log_channel_to_a_stream_and_unwritable_path(tmp_path: Path) -> None:
    stream = io.StringIO()
    run(LogSender(stream=stream).send("story.new", "al_1", body_with()))
    assert json.loads(stream.getvalue()) == body_with()
    with pytest.raises(DeliveryError, match="cannot open"):
        run(LogSender(tmp_path / "missing" / "a.jsonl").send("story.new", "al_1", body_with()))


# --- factory and test alert -----------------------------------------------------------


def test_sender_for_reads_config_fields_and_unwraps_secrets(
    webhook_peer: WebhookPeer, smtp_peer: SmtpPeer, tmp_path: Path
) -> None:
    hook = SimpleNamespace(
        name="desk-hook", url=webhook_peer.url, secret=SecretStr(SECRET),
        headers={"Authorization": SecretStr(TOKEN), "X-Team": "desk"},
        timeout=timedelta(seconds=7),
    )  # fmt: skip
    smtp = SimpleNamespace(host=smtp_peer.host, port=smtp_peer.port, security="none",
                           username=None, password=SecretStr(PASSWORD))  # fmt: skip
    mail = SimpleNamespace(name="desk-email", to=["desk@example.org"],
                           from_="monitor@example.org", smtp=smtp, digest=None)  # fmt: skip
    log = SimpleNamespace(name="log", path=tmp_path / "a.jsonl")

    hook_sender, mail_sender = sender_for(hook), sender_for(mail)
    log_sender = sender_for(log, default_timeout=timedelta(seconds=3))
    assert isinstance(hook_sender, WebhookSender) and isinstance(mail_sender, SmtpSender)
    assert isinstance(log_sender, LogSender)
    for sender in (hook_sender, mail_sender):
        assert SECRET not in repr(sender) and TOKEN not in repr(sender)
        assert PASSWORD not in repr(sender)

    run(hook_sender.send("story.new", "al_1", body_with()))
    run(mail_sender.send("story.new", "al_1", body_with()))
    run(log_sender.send("story.new", "al_1", body_with()))
    [request] = webhook_peer.requests
    assert request.header("Authorization") == TOKEN
    assert request.header("X-Monitor-Signature").startswith("sha256=")  # type: ignore[union-attr]
    assert len(smtp_peer.messages) == 1
    assert (tmp_path / "a.jsonl").read_bytes().count(b"\n") == 1
    assert policy_for(hook).send_timeout == 12.0


def test_send_test_sends_a_sample_with_event_test(webhook_peer: WebhookPeer) -> None:
    body = run(send_test(WebhookSender(webhook_peer.url), now=T0))
    [request] = webhook_peer.requests
    assert request.header("X-Monitor-Event") == "test"
    assert request.header("X-Monitor-Delivery") == body["id"]
    assert request.json()["event"] == "test"


def test_send_test_reports_failure(webhook_peer: WebhookPeer) -> None:
    webhook_peer.respond(500)
    with pytest.raises(DeliveryError, match="HTTP 500 from webhook"):
        run(send_test(WebhookSender(webhook_peer.url)))


def test_senders_and_policies_from_the_config_classes(
    webhook_peer: WebhookPeer, smtp_peer: SmtpPeer, tmp_path: Path
) -> None:
    config = pytest.importorskip("monitor.config")
    hook = config.WebhookChannel.model_validate(
        {"name": "desk-hook", "url": webhook_peer.url, "secret": SECRET,
         "headers": {"Authorization": TOKEN}, "timeout": "4s", "max_per_hour": 30}
    )  # fmt: skip
    mail = config.EmailChannel.model_validate(
        {"name": "desk-email", "to": ["desk@example.org"], "from": "monitor@example.org",
         "smtp": {"host": smtp_peer.host, "port": smtp_peer.port, "password": PASSWORD},
         "digest": "1d", "digest_at": "08:00 Europe/Berlin"}
    )  # fmt: skip
    log = config.LogChannel.model_validate({"name": "log", "path": str(tmp_path / "a.jsonl")})

    for channel in (hook, mail, log):
        run(send_test(sender_for(channel, default_timeout=timedelta(seconds=3)), now=T0))
    [request] = webhook_peer.requests
    assert request.header("Authorization") == TOKEN
    signature = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("X-Monitor-Signature") == f"sha256={signature}"
    [mail_received] = smtp_peer.messages
    assert mail_received.message["X-Monitor-Event"] == "test"
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 1

    hook_policy, mail_policy = policy_for(hook), policy_for(mail, default_timeout=3.0)
    assert (hook_policy.max_per_hour, hook_policy.digest, hook_policy.send_timeout) == (30, None, 9)
    assert mail_policy.digest == DigestSchedule(
        timedelta(days=1), time(8, 0), ZoneInfo("Europe/Berlin")
    )
    assert mail_policy.send_timeout == 8.0
