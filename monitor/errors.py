"""One error root for the whole project.

MonitorError
 ├── ConfigError     invalid feeds.yaml (carries every problem with its place)
 ├── FetchError      a feed could not be fetched (recorded on the feed, never fatal)
 ├── ParseError      a response is not a readable feed (recorded on the feed)
 ├── StorageError    the database is unusable (fatal for a command, retried by the daemon)
 ├── LockError       another instance holds the instance lock
 └── DeliveryError   a channel refused or could not take an alert (retried from the outbox)
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(MonitorError):
    """feeds.yaml is invalid; ``problems`` holds one line per problem, each naming its place."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class FetchError(MonitorError):
    """A feed could not be fetched."""


class ParseError(MonitorError):
    """A response could not be read as a feed."""


class StorageError(MonitorError):
    """The database is unusable."""


class LockError(MonitorError):
    """Another instance holds the lock."""


class DeliveryError(MonitorError):
    """A channel did not accept an alert."""
