"""Source kinds by name. Adding a source = one package + one line here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from moomarkets.errors import ConfigError

if TYPE_CHECKING:
    from moomarkets.sources.base import Source

_KINDS: dict[str, str] = {
    "jquants": "moomarkets.sources.jquants:JQuantsSource",
    "yfinance": "moomarkets.sources.yfinance:YFinanceSource",
}


def source_kinds() -> list[str]:
    return sorted(_KINDS)


def get_source_class(kind: str) -> type[Source]:
    try:
        target = _KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown source kind {kind!r} (known: {', '.join(source_kinds())})") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
