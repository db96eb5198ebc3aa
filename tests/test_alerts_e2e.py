"""Alerts end to end: feeds -> poll -> outbox -> real SMTP server and webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import alertpeers
from tests.alertpeers import html_of, plain_of
from tests.clirun import monitor as run_monitor
from tests.feedbuild import MARCH as MARCH_TEXTS
from tests.feedbuild import Item, LiveFeed, serve
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parents[1]
smtp_peer = alertpeers.smtp_peer
webhook_peer = alertpeers.webhook_peer
SECRET = "s3cr3t-hook-key"
NOW = datetime.now(UTC)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


def monitor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_monitor("--config", "feeds.yaml", *args, cwd=cwd, env={"HOOK_SECRET": SECRET})


def write_config(tmp_path: Path, urls: list[str], smtp_port: int, hook_url: str) -> None:
    feeds = "\n".join(f"  - url: {u}" for u in urls)
    (tmp_path / "feeds.yaml").write_text(f"""version: 1
settings:
  database: sqlite:///monitor.db
  timeout: 3s
feeds:
{feeds}
entities:
  - name: Wagner Group
    aliases: [Wagner]
    exclude: [Richard Wagner]
  - name: Yevgeny Prigozhin
    aliases: [Prigozhin]
alerts:
  - name: desk-email
    type: email
    to: [desk@example.org]
    from: monitor@example.org
    smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none}}
    entities: [Wagner Group]
  - name: desk-hook
    type: webhook
    url: {hook_url}
    secret: ${{HOOK_SECRET}}
""")


# wire copy: the same text from three outlets under three URLs joins one story as "exact"
# (paraphrased coverage of one event is tested in test_pipeline_e2e)
MARCH = [(MARCH_TEXTS[0][0] + " <script>alert(1)</script>", MARCH_TEXTS[0][1])] * 3


def test_three_feeds_one_event_gives_one_alert_per_channel_and_entity(
    server, tmp_path, smtp_peer, webhook_peer
):
    feeds = [
        LiveFeed(
            f"Outlet {c}", [Item(f"{c}-0", "Weather", "Rain.", published=NOW - timedelta(days=1))]
        )
        for c in "ABC"
    ]
    urls = [serve(server, f"/f{i}", f) for i, f in enumerate(feeds)]
    write_config(tmp_path, urls, smtp_peer.port, webhook_peer.url)
    assert monitor("poll", cwd=tmp_path).returncode == 0  # baseline
    for i, (feed, (title, summary)) in enumerate(zip(feeds, MARCH, strict=True)):
        feed.items.append(Item(f"m{i}", title, summary, published=NOW - timedelta(minutes=9 - i)))
    feeds[2].items.append(
        Item(
            "opera",
            "Bayreuth revives Richard Wagner's Parsifal",
            "Festival season opens.",
            published=NOW,
        )
    )
    res = monitor("poll", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # email: only Wagner Group is subscribed; one message for the one story
    [mail] = smtp_peer.wait_for(1)
    msg = mail.message
    assert msg["Subject"].startswith("[monitor] Wagner Group: ")
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["X-Monitor-Delivery"].startswith("al_")
    html = html_of(msg)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count('href="https://outlet') == 3
    assert "Bayreuth" not in plain_of(msg)
    # webhook: both entities, one story, signed
    hooks = webhook_peer.wait_for(2)
    assert sorted(r.json()["entity"]["name"] for r in hooks) == [
        "Wagner Group",
        "Yevgeny Prigozhin",
    ]
    for r in hooks:
        sig = hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.header("X-Monitor-Signature") == f"sha256={sig}"
        assert r.header("X-Monitor-Event") == "story.new"
        assert r.json()["story"]["sources"] == 3
        assert len(r.json()["story"]["articles"]) == 3
    assert len({r.json()["story"]["id"] for r in hooks}) == 1
    out = json.loads(monitor("alerts", "--json", cwd=tmp_path).stdout)
    assert sorted(a["channel"] for a in out) == ["desk-email", "desk-hook", "desk-hook"]
    assert {a["state"] for a in out} == {"sent"}


def test_receiver_outage_keeps_alert_pending_then_delivers(server, tmp_path, webhook_peer):
    feed = LiveFeed("Wire", [Item("0", "Weather", "Rain.", published=NOW - timedelta(days=1))])
    smtp_port = alertpeers.free_port()  # nothing listens there: the email channel is down
    write_config(tmp_path, [serve(server, "/w", feed)], smtp_port, webhook_peer.url)
    monitor("poll", cwd=tmp_path)
    webhook_peer.respond(500)
    feed.items.append(
        Item("1", "Wagner convoy crosses into Belarus", "Trucks seen at border.", published=NOW)
    )
    res = monitor("poll", cwd=tmp_path)
    assert res.returncode == 0
    assert SECRET not in res.stderr
    out = json.loads(monitor("alerts", "--json", cwd=tmp_path).stdout)
    assert {(a["channel"], a["state"]) for a in out} == {
        ("desk-email", "pending"),
        ("desk-hook", "pending"),
    }
    hook = next(a for a in out if a["channel"] == "desk-hook")
    assert hook["attempts"] == 1 and "500" in hook["last_error"]
    assert SECRET not in json.dumps(out)
    # retries wait for their backoff: let the next attempt come due, receiver healthy again
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET next_attempt = NULL"))
    engine.dispose()
    monitor("poll", cwd=tmp_path)
    assert [r.header("X-Monitor-Delivery") for r in webhook_peer.requests] == [hook["id"]] * 2
    out = {a["id"]: a for a in json.loads(monitor("alerts", "--json", cwd=tmp_path).stdout)}
    assert out[hook["id"]]["state"] == "sent"
