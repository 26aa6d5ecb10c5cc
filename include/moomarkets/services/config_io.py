"""The whole config as YAML: export, all-or-nothing import, and the alerts fields' YAML."""

from __future__ import annotations

from typing import Any

import psycopg
import yaml

from moomarkets.config.alerts import on_key
from moomarkets.errors import UsageError, first_line
from moomarkets.services import effects
from moomarkets.services.alert_connections import check_alert_connections
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError
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


def parse_alerts(text: str | None, *, label: str = "alerts") -> dict[str, Any] | None:
    """An ``alerts`` mapping from YAML (or JSON) text, as typed in an option or a textarea; blank
    means none (``{}``), None stays None (not given). InputError on the ``alerts`` field otherwise;
    the mapping's keys are checked where it is written."""
    if text is None:
        return None
    try:
        value = parse_yaml(text, label)
    except UsageError as exc:
        raise InputError({"alerts": str(exc)}) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError({"alerts": f"{label} must be a mapping such as {{targets: [{{type: slack, conn_id: ...}}]}}"})
    return on_key(value)


def alerts_text(alerts: dict[str, Any] | None) -> str:
    """An ``alerts`` mapping as the YAML a textarea shows (``parse_alerts`` reads it back); blank for none."""
    return yaml.safe_dump(alerts, sort_keys=False, allow_unicode=True) if alerts else ""


def _check_alerts(data: Any, airflow: bool) -> Outcome[None]:
    """The Connections every source and group of the file names for alerts (see ``alert_connections``)."""
    sources, groups = store.parse_config(data)
    out: Outcome[None] = Outcome()
    for subject, alerts in [*((f"data source {s.code!r}", s.alerts) for s in sources),
                            *((f"job group {g.name!r}", g.alerts) for g in groups)]:
        out.add(check_alert_connections(alerts, subject=subject, airflow=airflow))
    return out


def import_config(
    conn: psycopg.Connection, data: Any, *, replace_all: bool = False, airflow: bool = True
) -> Outcome[dict[str, int]]:
    """Create or update every source and group in ``data`` in one transaction, then sync all pools.

    The value counts what changed (see ``config_store.import_config``). With ``replace_all``, rows
    not in ``data`` are removed. Groups may depend on groups further down the file: the whole
    graph is checked first and the groups are written upstreams first. Alert Connections are
    checked before anything is written.
    """
    checked = _check_alerts(data, airflow)
    with committed(conn):
        counts = store.import_config(conn, data, replace_all=replace_all)
        sources = store.list_sources(conn)
    out = Outcome(counts).add(checked)
    if airflow:
        out.add(effects.sync_pools(sources))
    return out
