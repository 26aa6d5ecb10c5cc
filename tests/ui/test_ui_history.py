"""The Backfill form's history mode inside Airflow's real api-server app: it queues one manual run per
chunk with the history conf, and the group page shows the latest history load's progress."""

from __future__ import annotations

import pytest
from ui_helpers import PREFIX, csrf_from, sync_dags, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_history_mode_queues_conf_runs_and_the_page_shows_progress(client, warehouse_url):
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse import runs
    from moomarkets.warehouse.db import connect

    dag_id = "ui_page_history"
    with connect(warehouse_url) as conn:
        store.import_config(conn, {"job_groups": [
            {"name": dag_id, "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
             "timezone": "Asia/Tokyo", "parameters": {"universe": "all_listed"}, "is_enabled": True}]})
    sync_dags()
    client.cookies.set("_token", token("USER"))
    page = client.get(f"{PREFIX}/groups/{dag_id}")
    assert page.status_code == 200 and 'id="history"' in page.text and 'id="history-load"' not in page.text
    form = {"csrf_token": csrf_from(page.text), "from_date": "2026-03-02", "to_date": "2026-03-13",
            "reprocess_behavior": "none", "max_active_runs": "1", "history": "on"}
    r = client.post(f"{PREFIX}/groups/{dag_id}/backfill", data={**form, "to_date": "2026-02-01"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-to_date"' in r.text and " checked" in r.text
    r = client.post(f"{PREFIX}/groups/{dag_id}/backfill", data=form, follow_redirects=False)
    assert r.status_code == 303
    shown = client.get(r.headers["location"]).text
    assert "History load queued: 1 run(s), 10 of 10 trading day(s) 2026-03-02 to 2026-03-13" in shown
    with create_session() as s:
        [run] = s.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        assert run.run_id.startswith("history__2026-03-02__2026-03-13__") and run.logical_date is None
        assert run.conf["history"]["from"] == "2026-03-02" and run.conf["history"]["batch"]["to"] == "2026-03-13"
        batch = run.conf["history"]["batch"]
    # a second request while that run is queued is refused (no double load)
    r = client.post(f"{PREFIX}/groups/{dag_id}/backfill", data=form, follow_redirects=False)
    assert "still queued or running" in client.get(r.headers["location"]).text

    # once the run planned and loaded a unit, the page shows days, units, rows and an ETA
    unit = {"key": "dates:2026-03-02..2026-03-06", "kind": "dates",
            "params": {"dates": [f"2026-03-0{d}" for d in range(2, 7)]}}
    with connect(warehouse_url) as conn, conn.transaction():
        pk = runs.start_run(conn, group_name=dag_id, dag_id=dag_id, run_id=run.run_id, interval_start=None,
                            interval_end=None, units=[unit, {**unit, "key": "dates:2026-03-09..2026-03-13"}],
                            plan={"history": {"from": "2026-03-02", "to": "2026-03-13", "batch": batch}})
        runs.mark_unit_done(conn, pk, unit["key"], rows=1234, requests=5, error=None)
    page = client.get(f"{PREFIX}/groups/{dag_id}").text
    assert 'id="history-load"' in page
    assert "5/10 trading days" in page and "1/2 units" in page and "1,234 rows" in page and "ETA" in page
    with create_session() as s:
        for r in s.scalars(select(DagRun).where(DagRun.dag_id == dag_id)):
            s.delete(r)
    client.cookies.clear()
