"""Restate codes by hand (``moomarkets restate``) and read a group's restatements (CLI, group page).

The work is ``moomarkets.pipeline.restate``; this layer finds the source, reads its credentials
from its Airflow Connection (the mapping the tasks use) and parses the options.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from moomarkets.airflow.connections import get_credentials
from moomarkets.services.inputs import parse_day
from moomarkets.pipeline import restate as pipeline_restate
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse import restatements
from moomarkets.warehouse.db import connect

RECENT = 20


def restate_codes(
    url: str,
    source_code: str,
    codes: list[str],
    *,
    dataset: str = "daily_quotes",
    date_from: str | date | None = None,
    date_to: str | date | None = None,
) -> dict[str, Any]:
    """Re-fetch each code's stored history (within ``date_from..date_to``) from the source and bring
    the stored rows in line; every request waits on the source's shared rate limit."""
    frm = None if date_from is None else parse_day(date_from, "--from")
    to = None if date_to is None else parse_day(date_to, "--to")
    with connect(url) as conn:
        source = store.get_source(conn, source_code)  # NotFoundError naming it
    credentials = get_credentials(source.conn_id)
    return pipeline_restate.restate_codes(source, dataset, list(codes), credentials=credentials, url=url,
                                          start=frm, end=to)


def recent_for_group(conn: Any, name: str, limit: int = RECENT) -> list[dict[str, Any]]:
    """The group's recent restatements (its runs' and the manual ones of its source and dataset)."""
    group = store.get_group(conn, name)
    return restatements.recent_for_group(conn, group_name=group.name, source=group.data_source,
                                         dataset=group.dataset, limit=limit)
