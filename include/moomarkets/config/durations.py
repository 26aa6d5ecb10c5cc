"""Durations as people write them in config: ``90s``, ``45m``, ``2h``, ``1h30m``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from moomarkets.errors import ConfigError

_PART = re.compile(r"(\d+)\s*([dhms])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(
    value: Any,
    *,
    field: str,
    subject: str | None = None,
    minimum: timedelta = timedelta(seconds=1),
    maximum: timedelta = timedelta(days=30),
) -> timedelta:
    """``"1h30m"`` -> 90 minutes; anything else is a one-line ConfigError naming the field."""
    if not isinstance(value, str) or not _WHOLE.match(value.lower()):
        raise ConfigError(
            f"{value!r} is not a duration (write e.g. 90s, 45m, 2h, 1h30m or 1d)", field=field, subject=subject
        )
    seconds = sum(int(n) * _UNIT[u] for n, u in _PART.findall(value.lower()))
    # compared as seconds first: a huge number must be a range error, not timedelta's OverflowError
    if not minimum.total_seconds() <= seconds <= maximum.total_seconds():
        raise ConfigError(
            f"{value!r} is out of range ({format_duration(minimum)} .. {format_duration(maximum)})",
            field=field, subject=subject,
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest spelling ``parse_duration`` reads back: 5400 s -> ``1h30m``."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in _UNIT.items():
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
