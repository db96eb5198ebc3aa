"""Build small RSS documents for tests, served from a FeedServer route that honours ETags."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from tests.feedserver import FeedServer, RecordedRequest, Reply


@dataclass
class Item:
    guid: str
    title: str
    summary: str = ""
    link: str | None = None
    published: datetime | None = None


@dataclass
class LiveFeed:
    """A feed whose items a test edits between polls; the route serves the current state."""

    title: str
    items: list[Item] = field(default_factory=list)
    status: int = 200

    def xml(self) -> bytes:
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<rss version="2.0"><channel>',
            f"<title>{escape(self.title)}</title><link>https://example.org/</link>",
            "<description>test feed</description>",
        ]
        for it in self.items:
            parts.append("<item>")
            parts.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
            parts.append(f"<title>{escape(it.title)}</title>")
            link = it.link or f"https://{self.title.lower().replace(' ', '')}.example/{it.guid}"
            parts.append(f"<link>{escape(link)}</link>")
            parts.append(f"<description>{escape(it.summary)}</description>")
            when = it.published or datetime.now(UTC) - timedelta(minutes=5)
            parts.append(f"<pubDate>{format_datetime(when)}</pubDate>")
            parts.append("</item>")
        parts.append("</channel></rss>")
        return "\n".join(parts).encode()

    def handler(self, request: RecordedRequest) -> Reply:
        if self.status != 200:
            return Reply(status=self.status, body=b"unavailable")
        body = self.xml()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Reply(status=304, headers={"ETag": etag})
        return Reply(
            status=200, body=body, headers={"ETag": etag, "Content-Type": "application/rss+xml"}
        )


def serve(server: FeedServer, path: str, feed: LiveFeed) -> str:
    server.route(path, handler=feed.handler)
    return server.url(path)


# one event told three ways, and another event about the same people
MARCH = [
    (
        "Prigozhin halts Wagner march on Moscow after Belarus deal",
        "Yevgeny Prigozhin said his Wagner fighters would turn back from their advance on Moscow "
        "after a deal brokered by Belarusian President Alexander Lukashenko.",
    ),
    (
        "Wagner fighters turn back under Lukashenko-brokered deal",
        "Wagner chief Yevgeny Prigozhin ordered his columns heading to Moscow to return to base, "
        "citing an agreement mediated by Belarus leader Alexander Lukashenko to avoid bloodshed.",
    ),
    (
        "Prigozhin calls off armed mutiny and march on Moscow, heads to Belarus",
        "The Kremlin said Yevgeny Prigozhin will leave for Belarus after the Wagner chief halted "
        "his march on Moscow under a deal with Lukashenko; charges against him will be dropped.",
    ),
]
RECRUIT = (
    "Prigozhin's Wagner recruits prisoners for Bakhmut offensive",
    "Wagner founder Yevgeny Prigozhin has toured Russian prisons to recruit convicts for the "
    "fight around Bakhmut in eastern Ukraine, offering pardons after six months at the front.",
)
