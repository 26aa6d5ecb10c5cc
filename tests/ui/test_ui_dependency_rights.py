"""The group page's Dependencies table under per-DAG read rights: a neighbour group the user may not
read is listed by name only (no link, no last status, no day loaded, not whether it is enabled);
readable neighbours show everything."""

from __future__ import annotations

import pytest
from health_seed import only_reads
from ui_helpers import PREFIX, bearer, section

from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


@pytest.fixture
def neighbours(client, warehouse_url):
    """ui_api_quotes depends on ui_calendar (loaded through 2026-11-26) and ui_breadth depends on it."""
    with connect(warehouse_url) as conn, conn.transaction():
        for name, depends in (("ui_calendar", "{}"), ("ui_breadth", "{ui_api_quotes}")):
            conn.execute(
                "INSERT INTO job_groups (name, data_source_id, dataset, schedule, timezone, parameters, is_enabled,"
                " depends_on) SELECT %s, id, 'trading_calendar', '0 7 * * *', 'Asia/Tokyo', '{}', false, %s"
                " FROM data_sources WHERE code = 'jquants'", (name, depends))
        conn.execute("UPDATE job_groups SET depends_on = '{ui_calendar}' WHERE name = 'ui_api_quotes'")
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to)"
                     " VALUES ('ui_calendar', 'ui_calendar', 'scheduled__1', 'success', '2026-11-20', '2026-11-26')")
    return warehouse_url


def rows(page: str) -> dict[str, str]:
    table = section(page, '<table id="dependencies">', "</table>")
    return {name: section(table, f"<td>{direction}</td>", "</tr>")
            for direction, name in (("upstream", "ui_calendar"), ("downstream", "ui_breadth"))}


def test_unreadable_neighbours_are_listed_by_name_only(client, neighbours, monkeypatch):
    full = rows(client.get(f"{PREFIX}/groups/ui_api_quotes", headers=bearer("ADMIN")).text)
    assert "success" in full["ui_calendar"] and "2026-11-26" in full["ui_calendar"] and "disabled" in full["ui_calendar"]
    assert f'href="{PREFIX}/groups/ui_calendar"' in full["ui_calendar"] and "never ran" in full["ui_breadth"]

    only_reads(monkeypatch, "ui_api_quotes", "ui_breadth")
    page = client.get(f"{PREFIX}/groups/ui_api_quotes", headers=bearer("ADMIN"))
    assert page.status_code == 200, page.text[:300]
    limited = rows(page.text)
    hidden = limited["ui_calendar"]
    assert "ui_calendar" in hidden and "you may not read this group" in hidden
    for leak in ("success", "2026-11-26", "disabled", "href=", "never ran", "does not exist"):
        assert leak not in hidden, leak
    assert limited["ui_breadth"] == full["ui_breadth"]  # readable: shown as before
    # the page of a group the user may not read stays refused
    assert client.get(f"{PREFIX}/groups/ui_calendar", headers=bearer("ADMIN")).status_code == 403
