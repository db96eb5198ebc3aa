"""Durations, times of day and sizes as people write them in feeds.yaml.

Durations: ``500ms``, ``30s``, ``15m``, ``2h``, ``1d``, combinations such as ``1h30m``,
or a plain number of seconds. Times of day: ``08:00 Europe/Berlin`` (zone defaults to
UTC). Sizes: ``512KB``, ``10MB``, ``1GB`` (binary multiples: 1 KB = 1024 bytes) or a
plain number of bytes. Every parser raises ``ValueError`` with a message fit to show a
user as is.
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from datetime import time, timedelta
from functools import lru_cache

DURATION_HINT = "use e.g. 500ms, 30s, 15m, 2h, 1d"
SIZE_HINT = "use e.g. 512KB, 10MB, 1GB or a number of bytes"
TIME_HINT = 'use e.g. "08:00 Europe/Berlin"'

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)\s*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?:\s+(\S+))?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_FACTOR = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: object) -> timedelta:
    """Read a duration; raise ``ValueError`` with a message fit for a config error."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_seconds(value)
    else:
        raise ValueError(f"invalid duration {value!r} ({DURATION_HINT})")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r} ({DURATION_HINT})")
    return timedelta(seconds=seconds)


def _duration_seconds(text: str) -> float:
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    total, pos = 0.0, 0
    while pos < len(stripped):
        part = _DURATION_PART.match(stripped, pos)
        if part is None:
            raise ValueError(f"invalid duration {text!r} ({DURATION_HINT})")
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        pos = part.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r} ({DURATION_HINT})")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest config spelling of a duration: ``15m``, ``1h30m``, ``500ms``."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    sign = "-" if millis < 0 else ""
    millis = abs(millis)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return sign + "".join(parts)


def parse_size(value: object) -> int:
    """Read a size in bytes; raise ``ValueError`` with a message fit for a config error."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, factor = float(value), 1
    elif isinstance(value, float) and value.is_integer():
        number, factor = value, 1
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        unit = (match.group(2) or "b").lower()
        number, factor = float(match.group(1)), _SIZE_FACTOR[unit[0]]
    else:
        raise ValueError(f"invalid size {value!r} ({SIZE_HINT})")
    if number < 0:
        raise ValueError(f"invalid size {value!r} ({SIZE_HINT})")
    return round(number * factor)


def format_size(value: int) -> str:
    """A size as a config would write it: ``10MB``, ``512KB``, ``1500B``."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return f"{value}B"


def parse_time_of_day(text: str) -> tuple[time, str]:
    """``"08:00 Europe/Berlin"`` -> ``(time(8, 0), "Europe/Berlin")``; no zone means UTC."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"invalid time of day {text!r} ({TIME_HINT})")
    zone = match.group(3) or "UTC"
    check_time_zone(zone)
    return time(int(match.group(1)), int(match.group(2))), zone


def check_time_zone(zone: str) -> None:
    """Raise ``ValueError`` unless ``zone`` names an IANA time zone known here."""
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        known = _time_zones()
        if not known:
            raise ValueError(
                f"unknown time zone {zone!r}: no time zone database found "
                "(install the tzdata package)"
            ) from None
        close = difflib.get_close_matches(zone, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown time zone {zone!r}{hint}") from None


@lru_cache(maxsize=1)
def _time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())
