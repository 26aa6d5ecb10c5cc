"""The group page lists the group's restatements (event, action, factor, status, rows changed,
requests, run), newest first."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from ui_helpers import PREFIX, section, token

from moomarkets.sources.base import CorporateAction
from moomarkets.warehouse import restatements
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_group_page_shows_restatements(client, warehouse_url):
    client.cookies.set("_token", token("ADMIN"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200 and "No restatements recorded." in page.text
    with connect(warehouse_url) as conn, conn.transaction():
        restatements.record_detected(conn, source="jquants", dataset="daily_quotes",
                                     actions=[CorporateAction("80350", date(2026, 3, 30), "split", 0.5)],
                                     dag_id="ui_api_quotes", run_id="scheduled__2026-03-30", as_of=datetime.now(timezone.utc))
        [rec] = restatements.open_for_run(conn, "ui_api_quotes", "scheduled__2026-03-30")
        restatements.mark_done(conn, [rec["id"]], rows_changed=245, requests=1,
                               span=(date(2026, 1, 5), date(2026, 3, 27)))
    html = section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<table id="restatements">', "</table>")
    for text in ("80350", "2026-03-30", "split", "0.5", "done", "245", "scheduled__2026-03-30"):
        assert text in html, text
