"""The whole config as YAML: export, and all-or-nothing import."""

from __future__ import annotations

from typing import Any

import psycopg
import yaml

from moomarkets.errors import UsageError, first_line
from moomarkets.services import effects
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.warehouse import config_store as store


def export_yaml(conn: psycopg.Connection) -> tuple[str, dict[str, Any]]:
    """The sources and groups as YAML text (what ``import_config`` reads back), and the data."""
    data = store.export_config(conn)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True), data


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to data; UsageError naming ``where`` and the line of the first problem."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise UsageError(f"{where} is not valid YAML{at}: {problem}") from None


def import_config(
    conn: psycopg.Connection, data: Any, *, replace_all: bool = False, airflow: bool = True
) -> Outcome[dict[str, int]]:
    """Create or update every source and group in ``data`` in one transaction, then sync all pools.

    The value counts what changed (see ``config_store.import_config``). With ``replace_all``, rows
    not in ``data`` are removed.
    """
    with committed(conn):
        counts = store.import_config(conn, data, replace_all=replace_all)
        sources = store.list_sources(conn)
    out = Outcome(counts)
    if airflow:
        out.add(effects.sync_pools(sources))
    return out
