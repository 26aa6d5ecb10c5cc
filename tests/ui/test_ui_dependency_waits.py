"""Where a waiting run is visible: the group page's "Dependencies" section (upstream and downstream
groups with their last status and the last day they completely loaded, and the current waits), the
JSON API's group read (``waiting``) and ``moomarkets groups show``."""

from __future__ import annotations

import json
from datetime import date

import pytest
from ui_helpers import PREFIX, bearer, section, token

from moomarkets.warehouse import dependencies
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

LINE = "run scheduled__2026-11-27 waiting for ui_calendar to completely load 2026-11-27 since "


@pytest.fixture
def waiting(client, warehouse_url):
    """ui_api_quotes depends on a calendar group that loaded through 2026-11-26 and now waits for 11-27."""
    with connect(warehouse_url) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO job_groups (name, data_source_id, dataset, schedule, timezone, parameters, is_enabled)"
            " SELECT 'ui_calendar', id, 'trading_calendar', '0 7 * * *', 'Asia/Tokyo', '{}', true"
            " FROM data_sources WHERE code = 'jquants'")
        conn.execute("UPDATE job_groups SET depends_on = '{ui_calendar}' WHERE name = 'ui_api_quotes'")
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to)"
                     " VALUES ('ui_calendar', 'ui_calendar', 'scheduled__1', 'success', '2026-11-20', '2026-11-26')")
        dependencies.start_wait(conn, dag_id="ui_api_quotes", run_id="scheduled__2026-11-27", group_name="ui_api_quotes",
                                upstream="ui_calendar", trading_day=date(2026, 11, 27),
                                message="waiting for ui_calendar to completely load 2026-11-27")
    return warehouse_url


def test_group_pages_show_upstream_downstream_and_waits(client, waiting):
    client.cookies.set("_token", token("ADMIN"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes").text
    table = section(page, '<table id="dependencies">', "</table>")
    assert "upstream" in table and "ui_calendar" in table and "success" in table and "2026-11-26" in table
    waits = section(page, '<ul id="dependency-waits">', "</ul>")
    assert LINE in waits and "(fails after 6h)" in waits
    upstream_page = section(client.get(f"{PREFIX}/groups/ui_calendar").text, '<table id="dependencies">', "</table>")
    assert "downstream" in upstream_page and "ui_api_quotes" in upstream_page and "never ran" in upstream_page


def test_api_group_read_says_what_it_waits_for(client, waiting):
    body = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=bearer()).json()
    [line] = body["waiting"]
    assert line.startswith(LINE) and line.endswith("UTC (fails after 6h)")
    assert client.get(f"{PREFIX}/api/groups/ui_calendar", headers=bearer()).json()["waiting"] == []


def test_groups_show_lists_the_current_waits(waiting, capsys):
    from moomarkets.cli import main

    assert main(["groups", "show", "ui_api_quotes"]) == 0
    [line] = json.loads(capsys.readouterr().out)["dependencies"]["waiting"]
    assert line.startswith(LINE)
    with connect(waiting) as conn, conn.transaction():
        dependencies.finish_wait(conn, dag_id="ui_api_quotes", run_id="scheduled__2026-11-27", upstream="ui_calendar",
                                 status=dependencies.SATISFIED)
    assert main(["groups", "show", "ui_api_quotes"]) == 0
    assert json.loads(capsys.readouterr().out)["dependencies"]["waiting"] == []


def test_a_failed_upstream_run_is_named_wherever_the_wait_is_shown(client, waiting, capsys):
    from moomarkets.cli import main
    from moomarkets.pipeline import upstreams

    with connect(waiting) as conn, conn.transaction():
        conn.execute("INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to, error)"
                     " VALUES ('ui_calendar', 'ui_calendar', 'scheduled__2026-11-26T22:00:00+00:00', 'failed',"
                     " '2026-11-27', '2026-12-26', 'date:2026-11-27: HTTP 500')")
    day, problem = upstreams.missing_day(waiting, "ui_calendar", [date(2026, 11, 27)])
    upstreams.poll(waiting, dag_id="ui_api_quotes", run_id="scheduled__2026-11-27", upstream="ui_calendar",
                   days=[day])  # the trigger's poll brings the wait's message up to date
    reason = "(its run scheduled__2026-11-26T22:00:00+00:00 failed: date:2026-11-27: HTTP 500)"
    assert problem == reason[1:-1]
    [line] = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=bearer()).json()["waiting"]
    assert line.startswith(LINE.replace(" since ", f" {reason} since "))
    client.cookies.set("_token", token("ADMIN"))
    waits = section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<ul id="dependency-waits">', "</ul>")
    assert "failed: date:2026-11-27: HTTP 500" in waits
    capsys.readouterr()
    assert main(["groups", "show", "ui_api_quotes"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["dependencies"]["waiting"]
    assert reason in shown
