"""Data check results in the UI: the group page's "Checks" table and the coverage page's marks on
days whose latest check failed (inside Airflow's real api-server app)."""

from __future__ import annotations

import json

import pytest
from ui_helpers import PREFIX, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_group_page_lists_checks_and_coverage_marks_failed_days(client, warehouse_url):
    import psycopg

    sample = [{"code": "72030", "date": "2026-03-03", "why": "low/high do not bracket open/close"}]
    with psycopg.connect(warehouse_url) as conn:
        for run_id, passed, failed_days in (("r_old", True, []), ("r_new", False, ["2026-03-03"])):
            conn.execute(
                "INSERT INTO check_results (group_name, dag_id, run_id, dataset, check_name, severity, passed, failed,"
                " checked, sample, days, failed_days, message)"
                " VALUES ('ui_api_quotes', 'ui_api_quotes', %s, 'daily_quotes', 'price_sanity', 'error', %s, %s, 50,"
                " %s, '{2026-03-03}', %s::date[], 'msg')",
                (run_id, passed, 0 if passed else 1, json.dumps([] if passed else sample), failed_days),
            )
        conn.execute("INSERT INTO daily_quotes (source, code, date, close) VALUES ('jquants', '72030', '2026-03-03', 1)")
    client.cookies.set("_token", token("VIEWER"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200
    checks = page.text.split('id="checks"')[1].split("</table>")[0]
    assert "r_new" in checks and "r_old" in checks and "price_sanity" in checks
    assert "low/high do not bracket open/close" in checks and '<span class="badge bad">failed</span>' in checks

    cov = client.get(f"{PREFIX}/coverage", params={"dataset": "daily_quotes", "source": "jquants",
                                                    "start": "2026-03-02", "end": "2026-03-08"})
    assert cov.status_code == 200
    assert cov.text.count("checkfail") >= 2  # the day's cell and the legend
    assert "failed checks: ui_api_quotes: price_sanity (error)" in cov.text and 'id="check-days"' in cov.text
