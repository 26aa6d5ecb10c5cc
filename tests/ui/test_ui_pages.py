"""The server-rendered pages inside Airflow's real api-server app: forms with field errors, coverage
against the calendar, real run progress and pool use, and the backfill form."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from ui_helpers import PREFIX, bearer, csrf_from, section, sync_dags, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_pages_render_and_the_group_form_shows_field_errors(client):
    client.cookies.set("_token", token("ADMIN"))
    for path in ("/groups", "/sources", "/coverage", "/groups/ui_api_quotes", "/sources/jquants", "/groups/new",
                 "/sources/new", "/groups/ui_api_quotes/edit", "/sources/jquants/edit"):
        r = client.get(PREFIX + path)
        assert r.status_code == 200, (path, r.text[:300])
        assert "<html" in r.text
    assert client.get(f"{PREFIX}/groups/nope").status_code == 404
    assert client.get(f"{PREFIX}/", follow_redirects=False).headers["location"] == f"{PREFIX}/groups"

    csrf = csrf_from(client.get(f"{PREFIX}/groups/new").text)
    form = {"csrf_token": csrf, "name": "ui_form_group", "description": "from the form", "data_source": "jquants",
            "dataset": "daily_quotes", "schedule": "0 25 * * *", "timezone": "Asia/Tokyo",
            "parameters": '{"universe": "all_listed"}', "is_enabled": "on"}
    r = client.post(f"{PREFIX}/groups/new", data=form, follow_redirects=False)
    assert r.status_code == 422
    assert 'id="error-schedule"' in r.text and "not a valid cron expression" in r.text
    assert 'value="ui_form_group"' in r.text  # the user's input is kept
    r = client.post(f"{PREFIX}/groups/new", data={**form, "schedule": "0 19 * * 1-5", "parameters": "{oops"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-parameters"' in r.text and "not valid JSON" in r.text
    r = client.post(f"{PREFIX}/groups/new", data={**form, "schedule": "0 19 * * 1-5"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/ui_form_group"
    page = client.get(r.headers["location"])
    assert "Created job group ui_form_group." in page.text
    assert "Created job group" not in client.get(r.headers["location"]).text  # the message shows once

    csrf = csrf_from(client.get(f"{PREFIX}/sources/new").text)
    r = client.post(f"{PREFIX}/sources/new", data={"csrf_token": csrf, "code": "Bad", "name": "x", "kind": "jquants"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-code"' in r.text
    r = client.post(f"{PREFIX}/sources/new", data={"csrf_token": csrf, "code": "jq2", "name": "JQ 2", "kind": "jquants",
                                                   "config": '{"max_concurrency": 0}', "is_active": "on"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-config"' in r.text and "max_concurrency" in r.text


def test_coverage_shows_gaps_against_the_calendar(client, warehouse_url):
    import psycopg

    monday = date(2026, 3, 2)
    with psycopg.connect(warehouse_url) as conn:
        for i in range(7):
            d = monday + timedelta(days=i)
            conn.execute("INSERT INTO trading_calendar (source, date, hol_div) VALUES ('jquants', %s, %s)",
                         (d, 1 if d.weekday() < 5 and i != 2 else 0))  # Wednesday is a holiday
        for code in ("1301", "7203"):
            for i in (0, 1, 4):  # Thursday missing
                conn.execute("INSERT INTO daily_quotes (source, code, date, close) VALUES ('jquants', %s, %s, 1)",
                             (code, monday + timedelta(days=i)))
    r = client.get(f"{PREFIX}/api/coverage", params={"dataset": "daily_quotes", "source": "jquants",
                                                      "start": "2026-03-02", "end": "2026-03-08"}, headers=bearer("VIEWER"))
    assert r.status_code == 200, r.text
    cov = r.json()
    assert cov["gaps"] == ["2026-03-05"]
    assert [d["state"] for d in cov["days"]] == ["ok", "ok", "closed", "gap", "ok", "closed", "closed"]
    assert cov["matrix"]["codes"] == ["1301", "7203"]
    assert cov["matrix"]["missing"] == 2
    client.cookies.set("_token", token("VIEWER"))
    page = client.get(f"{PREFIX}/coverage", params={"dataset": "daily_quotes", "source": "jquants",
                                                     "start": "2026-03-02", "end": "2026-03-08"})
    assert page.status_code == 200 and ">1 gap day(s)<" in page.text and 'class="cell gap"' in page.text
    r = client.get(f"{PREFIX}/api/coverage", params={"dataset": "daily_quotes'; drop table x;--", "source": "jquants"},
                   headers=bearer("VIEWER"))
    assert r.status_code == 422


def test_run_progress_units_errors_and_pool_usage_show_real_data(client, warehouse_url):
    """A run recorded with the pipeline's own run-record functions (warehouse.runs; 3 units: one loaded, one failed, one
    still running), then finished: the list, the detail page, the JSON and the source's last error
    show it; the source's pool shows its slots and a running task."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.errors import AirflowOpError
    from moomarkets.warehouse import runs as run_records
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect
    from moomarkets.airflow.pools import pool_name, sync_pools
    from moomarkets.sources.base import FetchUnit

    error = "HTTPError: 429 Too Many Requests <retry-after=60> for 2026-03-03"
    units = [FetchUnit(key=f"date:2026-03-0{d}", kind="dates", params={"dates": [f"2026-03-0{d}"]}).to_dict()
             for d in (2, 3, 4)]
    ok, bad, busy = (u["key"] for u in units)
    run_id = "scheduled__2026-03-04T10:00:00+00:00"
    with connect(warehouse_url) as conn:
        with conn.transaction():
            run_pk = run_records.start_run(
                conn, group_name="ui_api_quotes", dag_id="ui_api_quotes", run_id=run_id,
                interval_start=datetime(2026, 3, 3, 10, tzinfo=timezone.utc),
                interval_end=datetime(2026, 3, 4, 10, tzinfo=timezone.utc),
                units=units, plan={"units": 3, "kinds": ["dates"]},
            )
        for u in units:
            with conn.transaction():
                run_records.mark_unit_running(conn, run_pk, u)
        with conn.transaction():
            run_records.mark_unit_done(conn, run_pk, ok, rows=1234, requests=3)
            run_records.refresh_run_progress(conn, run_pk)
        with conn.transaction():
            run_records.mark_unit_done(conn, run_pk, bad, rows=0, requests=2, error=error)
            run_records.refresh_run_progress(conn, run_pk)
        # no helper sets times; move them back so durations are known (10 min run, 95 s, 1 h 2 min 5 s, ~2 min)
        conn.execute("UPDATE runs SET started_at = now() - interval '10 minutes' WHERE id = %s", (run_pk,))
        for key, seconds in ((ok, 95), (bad, 3725)):
            conn.execute("UPDATE run_units SET started_at = finished_at - make_interval(secs => %s)"
                         " WHERE run_pk = %s AND unit_key = %s", (seconds, run_pk, key))
        conn.execute("UPDATE run_units SET started_at = now() - interval '125 seconds' WHERE run_pk = %s AND unit_key = %s",
                     (run_pk, busy))
        conn.commit()

    h = bearer("VIEWER")
    client.cookies.set("_token", token("VIEWER"))

    # -- group list: JSON and page
    g = {x["name"]: x for x in client.get(f"{PREFIX}/api/groups", headers=h).json()}["ui_api_quotes"]
    assert (g["last_run_status"], g["last_run_id"]) == ("running", run_id)
    assert (g["units_total"], g["units_done"], g["units_failed"], g["rows_loaded"]) == (3, 1, 1, 1234)
    row = section(client.get(f"{PREFIX}/groups").text, 'data-group="ui_api_quotes"', "</tr>")
    assert 'class="badge running">running<' in row
    assert "1/3 units" in row and ">1 failed<" in row
    assert re.search(r'class="num rows">\s*1,234\s*<', row), row
    assert "width:33%" in row

    # -- runs JSON: per-unit status, rows, duration, error
    r = client.get(f"{PREFIX}/api/groups/ui_api_quotes/runs", headers=h)
    assert r.status_code == 200, r.text
    [run] = r.json()
    assert (run["run_id"], run["status"], run["units_done"], run["units_failed"], run["rows_loaded"]) == (
        run_id, "running", 1, 1, 1234)
    assert 600 <= run["seconds"] < 700
    got = {u["unit_key"]: u for u in run["units"]}
    assert list(got) == [ok, bad, busy]
    assert [(got[k]["status"], got[k]["rows"], got[k]["requests"], got[k]["attempts"]) for k in (ok, bad, busy)] == [
        ("success", 1234, 3, 1), ("failed", 0, 2, 1), ("running", 0, 0, 1)]
    assert got[ok]["seconds"] == pytest.approx(95, abs=0.01) and got[ok]["error"] is None
    assert got[bad]["seconds"] == pytest.approx(3725, abs=0.01) and got[bad]["error"] == error
    assert 125 <= got[busy]["seconds"] < 200  # still running: the time so far
    assert client.get(f"{PREFIX}/api/groups/nope/runs", headers=h).status_code == 404

    # -- group detail page: the run and each unit, the error escaped
    runs = section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<table id="runs">', "</main>")
    assert run_id in runs and 'class="badge running">running<' in runs
    assert re.search(r">1/3 <span class=\"badge bad\">1 failed</span>", runs), runs
    assert re.search(r"10 min \d+ s", runs)
    unit_rows = dict(re.findall(r"<tr><td><code>([^<]+)</code></td>(.*?)</tr>", runs, re.S))
    assert list(unit_rows) == [ok, bad, busy]
    assert 'badge success">success<' in unit_rows[ok] and ">1,234<" in unit_rows[ok] and ">1 min 35 s<" in unit_rows[ok]
    assert 'badge failed">failed<' in unit_rows[bad] and ">1 h 2 min<" in unit_rows[bad]
    assert "HTTPError: 429 Too Many Requests &lt;retry-after=60&gt; for 2026-03-03" in unit_rows[bad]
    assert "<retry-after" not in runs
    assert 'badge running">running<' in unit_rows[busy] and re.search(r">2 min \d+ s<", unit_rows[busy])

    # -- the source's last error: the failed unit, while its run still goes on
    last = client.get(f"{PREFIX}/api/sources/jquants", headers=h).json()["last_error"]
    assert last is not None
    assert (last["group_name"], last["run_id"], last["status"], last["unit_key"]) == ("ui_api_quotes", run_id, "failed", bad)
    assert last["error"] == f"{bad}: {error}"
    page = client.get(f"{PREFIX}/sources/jquants").text
    assert "No failed runs." not in page
    assert f"{bad}: HTTPError: 429 Too Many Requests &lt;retry-after=60&gt;" in page and "still running" in page
    row = section(client.get(f"{PREFIX}/sources").text, 'data-source="jquants"', "</tr>")
    assert "429 Too Many Requests &lt;retry-after=60&gt;" in row

    # -- the last unit loads and the run closes: partial, 2/3, the run's error is now the last error
    with connect(warehouse_url) as conn, conn.transaction():
        run_records.mark_unit_done(conn, run_pk, busy, rows=10, requests=1)
        summary = run_records.finish_run(conn, run_pk)
    assert summary["status"] == "partial"
    g = {x["name"]: x for x in client.get(f"{PREFIX}/api/groups", headers=h).json()}["ui_api_quotes"]
    assert (g["last_run_status"], g["units_done"], g["units_failed"], g["rows_loaded"]) == ("partial", 2, 1, 1244)
    assert g["last_error"] == f"{bad}: {error}"
    row = section(client.get(f"{PREFIX}/groups").text, 'data-group="ui_api_quotes"', "</tr>")
    assert "2/3 units" in row and 'class="badge partial">partial<' in row and "1,244" in row
    last = client.get(f"{PREFIX}/api/sources/jquants", headers=h).json()["last_error"]
    assert (last["status"], last["unit_key"], last["error"]) == ("partial", None, f"{bad}: {error}")
    runs = section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<table id="runs">', "</main>")
    assert 'badge partial">partial<' in runs and "1,244" in runs

    # -- the pool: synced into Airflow, then one of the group's tasks runs in it
    with connect(warehouse_url) as conn:
        sync_pools(store.list_sources(conn))
    pool = pool_name("jquants")
    before = client.get(f"{PREFIX}/api/sources/jquants/pool", headers=h).json()
    assert before["name"] == pool and before["exists"] is True and before["slots"] == 2
    assert before["open"] == 2 - before["running"] - before["queued"]
    sync_dags()
    try:
        dag_run_id = airflow_ops.trigger_run("ui_api_quotes", user_name="test")
    except AirflowOpError:  # an earlier test's Run now fell in this same second
        time.sleep(1.1)
        dag_run_id = airflow_ops.trigger_run("ui_api_quotes", user_name="test")
    try:
        with create_session() as s:
            ti = s.scalars(select(TaskInstance).where(TaskInstance.dag_id == "ui_api_quotes",
                                                      TaskInstance.run_id == dag_run_id,
                                                      TaskInstance.pool == pool)).first()
            assert ti is not None, "no task of the group's DAG uses the source's pool"
            ti.state = TaskInstanceState.RUNNING
        usage = client.get(f"{PREFIX}/api/sources/jquants/pool", headers=h).json()
        assert usage == {**before, "running": before["running"] + 1, "open": before["open"] - 1}
        detail = client.get(f"{PREFIX}/sources/jquants").text
        assert (f"<code>{pool}</code>:\n    2 slot(s), {usage['running']} running, {usage['queued']} queued, "
                f"{usage['open']} open") in detail
        row = section(client.get(f"{PREFIX}/sources").text, 'data-source="jquants"', "</tr>")
        assert f"2 slot(s): {usage['running']} running, {usage['queued']} queued" in row
        assert "pool missing" not in row
    finally:
        with create_session() as s:
            s.delete(s.scalar(select(DagRun).where(DagRun.dag_id == "ui_api_quotes", DagRun.run_id == dag_run_id)))
    client.cookies.clear()


def test_backfill_form_creates_an_airflow_backfill_and_rejects_a_reversed_range(client, warehouse_url):
    from sqlalchemy import func, select

    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    dag_id = "ui_page_backfill"  # its own DAG: the API test leaves a backfill of ui_api_quotes running
    with connect(warehouse_url) as conn:
        store.import_config(conn, {"job_groups": [
            {"name": dag_id, "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
             "timezone": "Asia/Tokyo", "parameters": {"universe": "all_listed"}, "is_enabled": True}]})
    sync_dags()

    def backfills() -> list[Backfill]:
        with create_session() as s:
            return list(s.scalars(select(Backfill).where(Backfill.dag_id == dag_id)))

    assert backfills() == []
    client.cookies.set("_token", token("USER"))
    page = client.get(f"{PREFIX}/groups/{dag_id}")
    assert page.status_code == 200 and 'id="backfill-form"' in page.text
    csrf = csrf_from(page.text)
    url = f"{PREFIX}/groups/{dag_id}/backfill"

    # reversed: the form comes back with the error next to the To field, the user's dates kept
    form = {"csrf_token": csrf, "from_date": "2026-03-06", "to_date": "2026-03-02", "reprocess_behavior": "none",
            "max_active_runs": "2"}
    r = client.post(url, data=form, follow_redirects=False)
    assert r.status_code == 422, r.text[:300]
    m = re.search(r'<div class="field-error" id="error-to_date">([^<]+)</div>', r.text)
    assert m and "before From" in m.group(1) and "2026-03-06" in m.group(1), r.text
    assert 'value="2026-03-06"' in r.text and 'value="2026-03-02"' in r.text
    assert 'id="max_active_runs" name="max_active_runs" value="2"' in r.text
    r = client.post(url, data={**form, "from_date": "March 2nd"}, follow_redirects=False)
    assert r.status_code == 422 and 'id="error-from_date"' in r.text and "YYYY-MM-DD" in r.text
    assert backfills() == []

    # a valid range: Mon 2026-03-02 .. Fri 2026-03-06 in Tokyo, five runs
    r = client.post(url, data={**form, "from_date": "2026-03-02", "to_date": "2026-03-06"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/{dag_id}"
    [bf] = backfills()
    shown = client.get(r.headers["location"]).text
    assert f"Backfill {bf.id} created: 5 run(s) for 2026-03-02 to 2026-03-06." in shown
    # the backfill carries the trading days as `airflow backfill create` would (the group's
    # TradingDayTimetable reads them as days); its runs are the ones that load Mar 2..6
    utc = ZoneInfo("UTC")
    as_utc = lambda d: (d if d.tzinfo else d.replace(tzinfo=utc)).astimezone(utc)  # noqa: E731
    assert as_utc(bf.from_date) == datetime(2026, 3, 2, tzinfo=utc)
    assert as_utc(bf.to_date) == datetime(2026, 3, 6, tzinfo=utc)
    assert bf.max_active_runs == 2
    with create_session() as s:
        ends = s.scalars(select(DagRun.data_interval_end).where(DagRun.dag_id == dag_id, DagRun.run_type == "backfill")
                         .order_by(DagRun.data_interval_end)).all()
        assert s.scalar(select(func.count()).select_from(DagRun).where(DagRun.backfill_id == bf.id)) == 5
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [(as_utc(e).astimezone(tokyo).date().isoformat(), as_utc(e).astimezone(tokyo).hour) for e in ends] == [
        (f"2026-03-0{d}", 19) for d in range(2, 7)]
    client.cookies.clear()


def test_edit_forms_save_and_the_api_shares_the_backfill_limits(client, warehouse_url):
    """The edit forms commit what they show as saved (a read before the write once turned the write
    into a savepoint that was dropped with the connection), and the API's backfill checks are the
    service's: a reversed range is a field error, the parallel-runs limit is the same number."""
    from moomarkets.services import runs
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    client.cookies.set("_token", token("ADMIN"))
    csrf = csrf_from(client.get(f"{PREFIX}/groups/ui_api_quotes/edit").text)
    form = {"csrf_token": csrf, "description": "edited on the page", "data_source": "jquants", "dataset": "daily_quotes",
            "schedule": "0 20 * * 1-5", "timezone": "Asia/Tokyo", "parameters": '{"universe": "all_listed"}',
            "is_enabled": "on"}
    r = client.post(f"{PREFIX}/groups/ui_api_quotes/edit", data=form, follow_redirects=False)
    assert r.status_code == 303, re.findall(r'id="error-[^"]+">[^<]*', r.text)
    assert "Saved job group ui_api_quotes." in client.get(r.headers["location"]).text
    r = client.post(f"{PREFIX}/sources/jquants/edit", data={
        "csrf_token": csrf, "name": "J-Quants (edited)", "kind": "jquants", "conn_id": "jquants_default",
        "description": "", "config": '{"rate_limit": "600/minute", "max_concurrency": 3}', "is_active": "on"},
        follow_redirects=False)
    assert r.status_code == 303, re.findall(r'id="error-[^"]+">[^<]*', r.text)
    r = client.post(f"{PREFIX}/sources/jquants/edit", data={"csrf_token": csrf, "name": "x", "kind": "jquants",
                                                           "config": "[1]"}, follow_redirects=False)
    assert r.status_code == 422 and 'id="error-config"' in r.text and "Config must be a JSON object" in r.text
    client.cookies.clear()
    with connect(warehouse_url) as conn:
        group, source = store.get_group(conn, "ui_api_quotes"), store.get_source(conn, "jquants")
    assert (group.description, group.schedule) == ("edited on the page", "0 20 * * 1-5")
    assert (source.name, source.config["max_concurrency"]) == ("J-Quants (edited)", 3)

    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/backfills", headers=bearer("USER"),
                    json={"from_date": "2026-03-06", "to_date": "2026-03-02", "dry_run": True})
    assert r.status_code == 422, r.text
    [detail] = r.json()["detail"]
    assert detail["loc"] == ["body", "to_date"] and "before From (2026-03-06)" in detail["msg"]
    schema = client.get(f"{PREFIX}/openapi.json", headers=bearer("VIEWER")).json()["components"]["schemas"]["BackfillBody"]
    assert schema["properties"]["max_active_runs"]["maximum"] == runs.MAX_ACTIVE_RUNS
    assert schema["properties"]["reprocess_behavior"]["enum"] == list(runs.REPROCESS_BEHAVIORS)
