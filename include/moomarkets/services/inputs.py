"""User input to values, worded once for the CLI's options and the pages' fields."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from moomarkets.errors import UsageError

TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


class InputError(UsageError):
    """Input rejected field by field: ``errors`` maps each field to a message that reads on its own."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def parse_json_object(text: str | None, field: str, *, label: str | None = None) -> dict[str, Any]:
    """A JSON object from an option or a textarea; blank means ``{}``.

    ``label`` is how the user knows the field (``--config``, ``Config``); default: ``field``.
    """
    if text is None or not text.strip():
        return {}
    name = label or field
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            {field: f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"}
        ) from None
    if not isinstance(value, dict):
        raise InputError({field: f'{name} must be a JSON object, e.g. {{"key": "value"}}'})
    return value


def parse_day(text: str | date, option: str) -> date:
    """A ``YYYY-MM-DD`` option (or a date) as a date; a UsageError naming the option otherwise."""
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise UsageError(f"{option}: give a date as YYYY-MM-DD (got {text!r})") from None


def parse_bool(text: str) -> bool:
    """``true``/``yes``/``1``/``on`` or their opposites, any case; ValueError otherwise."""
    low = text.strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError(f"expected true or false, got {text!r}")
