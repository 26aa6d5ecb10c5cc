"""End to end: a job group imported from YAML runs as a real Airflow DAG (`dag.test()`) against
the local J-Quants v2 fake and loads exactly the fake's rows into the real PostgreSQL; a second
run of the same interval leaves identical rows; a failing unit does not sink the others."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect
from dagtest import CONFIG, get_dag  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")


def table(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT source, code, date, open, high, low, close, upper_limit, lower_limit, volume, turnover,"
            " adjustment_factor, adj_open, adj_high, adj_low, adj_close, adj_volume, loaded_at"
            " FROM daily_quotes ORDER BY code, date"
        ).fetchall()


def expected_keys(day: date) -> set[tuple]:
    from moomarkets.testing.jquants_data import daily_bars_for_date

    return {(r["Code"], r["Date"]) for r in daily_bars_for_date(day)}


def asset_events(dag_id: str, run_id: str) -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
        ).all()
    return [(uri, dict(extra or {})) for uri, extra in rows]


def test_run_loads_exactly_the_fake_rows_and_rerun_changes_nothing(group_env, fake):
    _, state = fake
    dag = get_dag("jp_daily_quotes")
    # a manual run at Fri 2026-11-20 20:00 Tokyo covers (Thu 19:00, Fri 19:00]: Friday's bars
    run = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "success"
    rows = table(group_env)
    want = expected_keys(date(2026, 11, 20))
    assert len(want) > 20  # more than one page at page_size=20: pagination was followed
    assert {(r[1], r[2].strftime("%Y-%m-%d")) for r in rows} == {(c, d if "-" in d else f"{d[:4]}-{d[4:6]}-{d[6:]}") for c, d in want}
    assert len(rows) == len(want)
    assert all(r[0] == "jquants" for r in rows)
    with psycopg.connect(group_env) as conn:
        status = conn.execute(
            "SELECT last_run_status, units_total, units_done, units_failed, rows_loaded FROM job_group_status"
        ).fetchone()
    assert status == ("success", 1, 1, 0, len(want))
    # a complete run updates the dataset's Airflow asset, for downstream DAGs to schedule on
    [(uri, extra)] = asset_events("jp_daily_quotes", run.run_id)
    assert uri == "moomarkets://jquants/daily_quotes"
    assert extra["group"] == "jp_daily_quotes" and extra["rows_loaded"] == len(want) and extra["units"] == 1
    assert extra["data_interval_end"].startswith("2026-11-20T10:00:00")  # Fri 19:00 Tokyo

    requests_before = len(state.requests)
    run2 = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run2.state == "success"
    assert table(group_env) == rows  # identical, loaded_at included: nothing rewritten
    assert len(state.requests) > requests_before  # it really fetched again


def test_failing_unit_is_recorded_and_others_still_load(group_env, fake):
    _, state = fake
    with connect(group_env) as conn, conn.transaction():
        store.update_group(conn, "jp_daily_quotes", schedule="0 19 * * 5")  # weekly: (Fri, Fri] -> Mon..Fri
    dag = get_dag("jp_daily_quotes")
    # the first request of the run gets a 400: permanent, so that unit fails at once, unretried
    state.inject("400", 1, message="This API requires at least 1 parameter as follows; 'date','code'.")
    run = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "failed"  # a run never reports success while a unit lacks data
    assert asset_events("jp_daily_quotes", run.run_id) == []  # no asset event on a partial load
    with psycopg.connect(group_env) as conn:
        units = dict(conn.execute("SELECT unit_key, status FROM run_units").fetchall())
        error = conn.execute("SELECT error FROM run_units WHERE status = 'failed'").fetchone()[0]
        run_row = conn.execute("SELECT status, units_total, units_failed FROM runs").fetchone()
        loaded_days = {d.isoformat() for (d,) in conn.execute("SELECT DISTINCT date FROM daily_quotes")}
    failed = [k for k, v in units.items() if v == "failed"]
    assert len(failed) == 1 and set(units) == {f"date:2026-11-{d}" for d in range(16, 21)}
    assert all(v == "success" for k, v in units.items() if k not in failed)
    assert "This API requires at least 1 parameter" in error
    assert run_row == ("partial", 5, 1)
    assert loaded_days == {f"2026-11-{d}" for d in range(16, 21)} - {failed[0].split(":")[1]}


def test_disabled_group_run_is_skipped_without_requests(group_env, fake):
    _, state = fake
    with connect(group_env) as conn, conn.transaction():
        store.update_group(conn, "jp_daily_quotes", is_enabled=False)
    dag = get_dag("jp_daily_quotes")
    assert dag.is_paused_upon_creation is True
    run = dag.test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "success"  # nothing failed: the run skipped itself
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["plan_units"] == "skipped"
    assert state.count() == 0
    with psycopg.connect(group_env) as conn:
        assert conn.execute("SELECT status, error FROM runs").fetchone() == (
            "skipped", "job group 'jp_daily_quotes' is disabled"
        )
        assert conn.execute("SELECT count(*) FROM daily_quotes").fetchone() == (0,)


def test_api_key_never_reaches_logs_or_run_records(group_env, fake, capfd):
    _, state = fake
    # a server that echoes the key back in its error text (a forced failure)
    state.inject("400", 1, message="bad request for key test-key-123456")
    run = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
    assert run.state == "failed"
    out = capfd.readouterr()
    assert "bad request for key" in out.out + out.err  # the failure really was logged...
    assert "test-key-123456" not in out.out + out.err  # ...without the key
    with psycopg.connect(group_env) as conn:
        (error,) = conn.execute("SELECT error FROM run_units").fetchone()
    assert "bad request for key ***" in error


def test_connection_key_is_registered_with_airflows_secrets_masker(monkeypatch):
    """The client redacts its own messages; this checks the second line of defence on its own:
    any log line or rendered text that still carried the key is masked by Airflow."""
    from airflow.sdk.log import redact

    from moomarkets.airflow.connections import get_credentials

    key = "zz-masker-key-5521"
    assert redact(f"calling with {key}") == f"calling with {key}"  # not known to the masker yet
    monkeypatch.setenv("AIRFLOW_CONN_JQ_MASKED", json.dumps({"conn_type": "jquants", "password": key}))
    assert get_credentials("jq_masked").secret == key
    assert redact(f"calling with {key}") == "calling with ***"


def test_low_rate_limit_run_completes_with_zero_429s(warehouse_url, airflow_db, monkeypatch, tmp_path):
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    # the server allows 6 requests per 3 s; 5 days x 3 pages = 15 requests must pace themselves
    cfg = FakeConfig(api_key="k-rate", page_size=20, rate_limit_per_minute=6, rate_limit_window=3.0)
    with running_fake(cfg) as (base_url, state):
        monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
        monkeypatch.setenv(
            "AIRFLOW_CONN_JQUANTS_DEFAULT", json.dumps({"conn_type": "jquants", "host": base_url, "password": "k-rate"})
        )
        low = CONFIG.replace("600/minute", "6/3second").replace('"0 19 * * 1-5"', '"0 19 * * 5"')
        with connect(warehouse_url) as conn:
            store.import_config(conn, yaml.safe_load(low))
        run = get_dag("jp_daily_quotes").test(logical_date=datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO))
        statuses = list(state.statuses)
    assert run.state == "success"
    assert len(statuses) == 15 and set(statuses) == {200}  # every request paced: not one 429
