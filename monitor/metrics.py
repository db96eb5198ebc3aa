"""Process metrics in the Prometheus text exposition format (version 0.0.4), no dependency.

The daemon updates the module-level ``METRICS`` from any thread or task::

    METRICS.fetches_total.inc(status=304)
    METRICS.alerts_sent_total.inc(channel="desk-hook")
    METRICS.cycle_duration_seconds.observe(1.25)

and ``/metrics`` serves ``render()``. Every name carries the ``monitor_`` prefix, as
Prometheus naming asks of an application's metrics. Values live in memory and start
from zero with the process, as counters do.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from typing import TypeVar

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_F = TypeVar("_F", bound="_Family")


class _Family:
    """One metric family: a name, its help text, its type, and its samples."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def exposition(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._sample_lines()

    def reset(self) -> None:
        raise NotImplementedError

    def _sample_lines(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(_Family):
    """A monotonically increasing count, optionally split by labels."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text)
        for label in labels:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self.label_names = labels
        self._values: dict[tuple[str, ...], float] = {}
        if not labels:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        """Add ``amount`` (>= 0) to the sample with these label values (all labels required)."""
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0.0)

    def reset(self) -> None:
        with self._lock:
            self._values = {(): 0.0} if not self.label_names else {}

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            expected = ", ".join(self.label_names) or "no labels"
            raise ValueError(f"{self.name}: expected {expected}, got {', '.join(labels) or 'none'}")
        return tuple(str(labels[name]) for name in self.label_names)

    def _sample_lines(self) -> Iterator[str]:
        with self._lock:
            samples = sorted(self._values.items())
        for key, value in samples:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(_Family):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def value(self) -> float:
        with self._lock:
            return self._value

    def reset(self) -> None:
        self.set(0.0)

    def _sample_lines(self) -> Iterator[str]:
        yield f"{self.name} {_number(self.value())}"


class Summary(_Family):
    """Sum and count of observations (a summary without quantiles), plus the last one.

    The last observation is its own gauge family, ``<name>_last``, because a summary
    family may only hold ``_sum``, ``_count`` and quantile samples.
    """

    kind = "summary"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._sum = 0.0
        self._count = 0
        self._last = math.nan

    def observe(self, value: float) -> None:
        with self._lock:
            self._sum += value
            self._count += 1
            self._last = value

    def snapshot(self) -> tuple[float, int, float]:
        """(sum, count, last); last is NaN before the first observation."""
        with self._lock:
            return self._sum, self._count, self._last

    def reset(self) -> None:
        with self._lock:
            self._sum, self._count, self._last = 0.0, 0, math.nan

    def exposition(self) -> Iterator[str]:
        yield from super().exposition()
        last = f"{self.name}_last"
        yield f"# HELP {last} {_escape_help('Most recent observation of ' + self.name + '.')}"
        yield f"# TYPE {last} gauge"
        yield f"{last} {_number(self.snapshot()[2])}"

    def _sample_lines(self) -> Iterator[str]:
        total, count, _ = self.snapshot()
        yield f"{self.name}_sum {_number(total)}"
        yield f"{self.name}_count {count}"


class Registry:
    """An ordered set of metric families, rendered together."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str) -> Gauge:
        return self._add(Gauge(name, help_text))

    def summary(self, name: str, help_text: str) -> Summary:
        return self._add(Summary(name, help_text))

    def render(self) -> str:
        """Every family in the text exposition format, ending with a newline."""
        with self._lock:
            families = list(self._families.values())
        lines = [line for family in families for line in family.exposition()]
        return "\n".join(lines) + "\n"

    def reset(self) -> None:
        """Back to zero (for tests)."""
        with self._lock:
            families = list(self._families.values())
        for family in families:
            family.reset()

    def _add(self, family: _F) -> _F:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name} is already registered")
            self._families[family.name] = family
        return family


class MonitorMetrics(Registry):
    """The daemon's metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches_total = self.counter(
            "monitor_fetches_total",
            "Feed fetches by outcome: the HTTP status, or the error kind when there was no answer.",
            ("status",),
        )
        self.parse_failures_total = self.counter(
            "monitor_parse_failures_total", "Responses that could not be read as a feed."
        )
        self.articles_stored_total = self.counter(
            "monitor_articles_stored_total", "Articles stored (new or updated)."
        )
        self.alerts_sent_total = self.counter(
            "monitor_alerts_sent_total", "Alerts delivered, by channel.", ("channel",)
        )
        self.alerts_failed_total = self.counter(
            "monitor_alerts_failed_total",
            "Failed alert delivery attempts, by channel.",
            ("channel",),
        )
        self.cycle_duration_seconds = self.summary(
            "monitor_cycle_duration_seconds", "Duration of polling cycles in seconds."
        )


METRICS = MonitorMetrics()


def render() -> str:
    """``METRICS`` in the Prometheus text exposition format."""
    return METRICS.render()


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = (f'{n}="{_escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + ",".join(pairs) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
