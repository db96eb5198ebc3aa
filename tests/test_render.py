"""Pure rendering: JSON bodies of the contract and the email message (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from alerts.render import (
    MAX_SUMMARY,
    JsonBody,
    digest_body,
    feed_body,
    is_web_url,
    json_bytes,
    plain_summary,
    render_email,
    rfc3339,
    sample_body,
    story_body,
)
from monitor.model import ArticleSnapshot, FeedSnapshot, OutboxAlert, StorySnapshot
from tests.alertpeers import html_of, plain_of

T0 = datetime(2026, 11, 28, 7, 1, 2, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def make_alert(**changes: object) -> OutboxAlert:
    values: dict[str, object] = dict(
        id="al_1f2e",
        channel="desk",
        event="story.new",
        entity="Wagner Group",
        matched=("Wagner PMC",),
        story_id="s_9",
        feed_url=None,
        created_at=T0,
        attempts=0,
        state="pending",
        next_attempt=None,
        last_error=None,
    )
    values.update(changes)
    return OutboxAlert(**values)  # type: ignore[arg-type]


def make_article(n: int, **changes: object) -> ArticleSnapshot:
    values: dict[str, object] = dict(
        id=f"a_{n}",
        title=f"Article {n}",
        url=f"https://news.example.org/{n}?a=1&b=2",
        feed="Mehr News",
        published=T0 - timedelta(hours=100 - n),
        summary=f"Summary {n}.",
    )
    values.update(changes)
    return ArticleSnapshot(**values)  # type: ignore[arg-type]


def make_story(*articles: ArticleSnapshot, title: str = "Wagner moves") -> StorySnapshot:
    return StorySnapshot(
        id="s_9",
        title=title,
        first_seen=T0 - timedelta(hours=2),
        last_seen=T0,
        sources=2,
        articles=articles or (make_article(1),),
    )


# --- bodies ---------------------------------------------------------------------------


def test_story_body_has_the_contract_shape() -> None:
    body = story_body(make_alert(), make_story(make_article(1)))
    assert body == {
        "id": "al_1f2e",
        "event": "story.new",
        "created_at": "2026-11-28T07:01:02Z",
        "entity": {"name": "Wagner Group", "matched": ["Wagner PMC"]},
        "story": {
            "id": "s_9",
            "title": "Wagner moves",
            "first_seen": "2026-11-28T05:01:02Z",
            "sources": 2,
            "articles": [
                {
                    "title": "Article 1",
                    "url": "https://news.example.org/1?a=1&b=2",
                    "feed": "Mehr News",
                    "published": "2026-11-24T04:01:02Z",
                    "summary": "Summary 1.",
                }
            ],
        },
    }


def test_story_body_keeps_the_20_newest_in_ascending_order_and_counts_the_rest() -> None:
    articles = [make_article(n) for n in range(25)]
    shuffled = tuple(articles[::2] + articles[1::2])
    body = story_body(make_alert(), make_story(*shuffled))
    shown = [a["title"] for a in body["story"]["articles"]]
    assert shown == [f"Article {n}" for n in range(5, 25)]
    assert body["story"]["more"] == 5


def test_story_body_without_truncation_has_no_more() -> None:
    body = story_body(make_alert(), make_story(*(make_article(n) for n in range(20))))
    assert len(body["story"]["articles"]) == 20
    assert "more" not in body["story"]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive: UTC
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=PLUS_TWO), "2026-01-02T01:04:05Z"),
    ],
)
def test_rfc3339_is_utc_with_z(moment: datetime, expected: str) -> None:
    assert rfc3339(moment) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("  spaced \n\t out  ", "spaced out"),
        ("word " * 200, None),  # cut: checked below
        ("x" * 600, None),
    ],
)
def test_summary_is_plain_and_at_most_500_chars(text: str, expected: str | None) -> None:
    summary = plain_summary(text)
    assert len(summary) <= MAX_SUMMARY
    if expected is not None:
        assert summary == expected
    else:
        assert summary.endswith("…")


def test_feed_body_has_the_contract_shape() -> None:
    alert = make_alert(event="feed.broken", entity=None, matched=(), story_id=None)
    feed = FeedSnapshot("Mehr News", "https://en.mehrnews.com/rss", "timeout after 30s", T0)
    assert feed_body(alert, feed) == {
        "id": "al_1f2e",
        "event": "feed.broken",
        "created_at": "2026-11-28T07:01:02Z",
        "feed": {
            "name": "Mehr News",
            "url": "https://en.mehrnews.com/rss",
            "last_error": "timeout after 30s",
            "failing_since": "2026-11-28T07:01:02Z",
        },
    }
    recovered = FeedSnapshot("Mehr News", "https://en.mehrnews.com/rss", None, None)
    assert feed_body(make_alert(event="feed.recovered"), recovered)["feed"]["failing_since"] is None


def test_digest_body_wraps_story_bodies() -> None:
    one = story_body(make_alert(), make_story())
    assert digest_body("dg_1", T0, [one]) == {
        "id": "dg_1",
        "event": "digest",
        "created_at": "2026-11-28T07:01:02Z",
        "alerts": [one],
    }


def test_json_bytes_is_compact_utf8_on_one_line() -> None:
    body = story_body(make_alert(), make_story(make_article(1, title="Käse\nnews")))
    raw = json_bytes(body)
    assert b"\n" not in raw
    assert "Käse".encode() in raw
    assert raw.startswith(b'{"id":"al_1f2e","event":"story.new"')
    assert json.loads(raw) == body


# --- email ----------------------------------------------------------------------------


def email_for(body: JsonBody) -> EmailMessage:
    return render_email(body, sender="monitor@example.org", to=["desk@example.org", "b@x.org"])


def test_email_is_multipart_alternative_with_the_contract_headers() -> None:
    message = email_for(story_body(make_alert(), make_story()))
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == "[monitor] Wagner Group: Wagner moves"
    assert message["Message-ID"] == "<al_1f2e@feed-monitor>"
    assert message["X-Monitor-Delivery"] == "al_1f2e"
    assert message["X-Monitor-Event"] == "story.new"
    assert message["From"] == "monitor@example.org"
    assert message["To"] == "desk@example.org, b@x.org"
    assert message["Date"].datetime == T0.replace(microsecond=0)


def test_feed_text_is_escaped_in_html_and_literal_in_plain_text() -> None:
    evil = "<script>alert('x')</script> & <b>bold</b>"
    story = make_story(make_article(1, title=evil, summary=evil, feed=evil), title=evil)
    message = email_for(story_body(make_alert(entity=evil), story))
    html = html_of(message)
    plain = plain_of(message)
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert evil in plain
    assert evil in message["Subject"]  # a header is text, never markup


def test_every_article_link_is_there_and_only_http_urls_become_links() -> None:
    articles = (
        make_article(1, url="https://a.example.org/x?q=1&r=2"),
        make_article(2, url="http://b.example.org/y"),
        make_article(3, url="javascript:alert(1)"),
        make_article(4, url='https://c.example.org/"><script>x</script>'),
        make_article(5, url=None),
    )
    message = email_for(story_body(make_alert(), make_story(*articles)))
    html = html_of(message)
    plain = plain_of(message)
    assert '<a href="https://a.example.org/x?q=1&amp;r=2">' in html
    assert '<a href="http://b.example.org/y">' in html
    assert 'href="javascript' not in html and "javascript:alert(1)" in html
    assert "<script>" not in html
    assert html.count("<a href=") == 3
    for url in ("https://a.example.org/x?q=1&r=2", "http://b.example.org/y", "javascript:alert(1)"):
        assert url in plain


def test_subject_is_one_line_whatever_the_title() -> None:
    story = make_story(title="Breaking:\r\nBcc: victim@example.org\n" + "long " * 100)
    message = email_for(story_body(make_alert(), story))
    subject = message["Subject"]
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("[monitor] Wagner Group: Breaking: Bcc: victim@example.org long")
    assert message["Bcc"] is None
    assert len(subject) < 300


@pytest.mark.parametrize(
    ("count", "subject"), [(1, "[monitor] 1 new story"), (2, "[monitor] 2 new stories")]
)
def test_digest_email_lists_every_story(count: int, subject: str) -> None:
    bodies = [
        story_body(make_alert(id=f"al_{n}"), make_story(make_article(n), title=f"Story {n}"))
        for n in range(count)
    ]
    message = email_for(digest_body("dg_abc", T0, bodies))
    assert message["Subject"] == subject
    assert message["X-Monitor-Event"] == "digest"
    assert message["Message-ID"] == "<dg_abc@feed-monitor>"
    html = html_of(message)
    for n in range(count):
        assert f"Story {n}" in html
        assert f'href="https://news.example.org/{n}?a=1&amp;b=2"' in html


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        ("feed.broken", "[monitor] feed broken: Mehr <News>"),
        ("feed.recovered", "[monitor] feed recovered: Mehr <News>"),
    ],
)
def test_feed_health_email(event: str, subject: str) -> None:
    feed = FeedSnapshot("Mehr <News>", "https://en.mehrnews.com/rss", "HTTP 503", T0)
    message = email_for(feed_body(make_alert(event=event), feed))
    assert message["Subject"] == subject
    html = html_of(message)
    assert "Mehr &lt;News&gt;" in html
    assert "HTTP 503" in plain_of(message)


def test_sample_alert_renders_as_a_test_event() -> None:
    body = sample_body("al_test", T0)
    message = email_for(body)
    assert body["event"] == "test"
    assert message["X-Monitor-Event"] == "test"
    assert message["Subject"].startswith("[monitor] test: ")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/a", True),
        ("HTTP://EXAMPLE.ORG", True),
        ("http://", False),
        ("javascript:alert(1)", False),
        ("data:text/html,x", False),
        ("ftp://example.org/x", False),
        ("/relative/path", False),
        ("https://exa mple.org", False),
        ("https://example.org/\x00", False),
        (None, False),
        ("", False),
    ],
)
def test_only_absolute_http_urls_are_links(url: str | None, ok: bool) -> None:
    assert is_web_url(url) is ok
