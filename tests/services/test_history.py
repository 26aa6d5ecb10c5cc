"""History mode's rules: the run conf is checked strictly, a range is split into chunks of at most
``run_days`` trading days (one DAG run each), and a rerun queues and plans only the days that no
successful unit of the group loaded yet. Airflow's trigger is stood in for (the real run is in
tests/airflow/test_history_run.py)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
import yaml

from moomarkets.errors import AirflowOpError, ConfigError
from moomarkets.pipeline import history as pipeline_history
from moomarkets.pipeline.history import HistorySpec, parse_conf
from moomarkets.services import history
from moomarkets.services.inputs import InputError
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse import history as history_store
from moomarkets.warehouse import runs
from moomarkets.warehouse.db import connect

CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 60/minute, max_concurrency: 4}}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes,
     schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


# -- conf validation (no database) ---------------------------------------------------------
def test_an_ordinary_run_has_no_history():
    assert parse_conf(None) is None and parse_conf({}) is None and parse_conf({"other": 1}) is None


def test_a_history_conf_round_trips():
    spec = parse_conf({"history": {"from": "2026-01-05", "to": "2026-02-27", "unit_days": 10, "redo": True,
                                   "batch": {"id": "x", "from": "2026-01-05", "to": "2026-12-30"}}})
    assert spec == HistorySpec(date(2026, 1, 5), date(2026, 2, 27), 10, True,
                               {"id": "x", "from": "2026-01-05", "to": "2026-12-30"})
    assert parse_conf(spec.to_conf()) == spec


@pytest.mark.parametrize(
    "history, field",
    [
        ("2026-01-05", "history"),
        ({"from": "2026-01-05"}, "history.to"),
        ({"from": "2026-1-5x", "to": "2026-02-27"}, "history.from"),
        ({"from": 20260105, "to": "2026-02-27"}, "history.from"),
        ({"from": "2026-02-27", "to": "2026-01-05"}, "history.to"),
        ({"from": "1900-01-01", "to": "2026-01-05"}, "history.to"),
        ({"from": "2026-01-05", "to": "2026-02-27", "unit_days": 0}, "history.unit_days"),
        ({"from": "2026-01-05", "to": "2026-02-27", "unit_days": True}, "history.unit_days"),
        ({"from": "2026-01-05", "to": "2026-02-27", "redo": "yes"}, "history.redo"),
        ({"from": "2026-01-05", "to": "2026-02-27", "batch": {"id": 3}}, "history.batch"),
        ({"from": "2026-01-05", "to": "2026-02-27", "dayz": 3}, "history"),
    ],
)
def test_a_malformed_history_conf_names_the_field(history, field):
    with pytest.raises(ConfigError) as err:
        parse_conf({"history": history})
    assert err.value.field == field


# -- request checks and chunking (no database) -------------------------------------------------
def test_history_request_names_every_bad_field():
    with pytest.raises(InputError) as err:
        history.history_request("2026-02-01", "2026-01-01", run_days=0, unit_days="many")
    assert set(err.value.errors) == {"to_date", "run_days", "unit_days"}
    ok = history.history_request("2026-01-01", "2026-12-31", run_days="", unit_days="5")
    assert (ok.run_days, ok.unit_days) == (history.DEFAULT_RUN_DAYS, 5)


def test_chunks_are_consecutive_and_at_most_run_days():
    days = [date(2026, 1, d) for d in range(5, 31) if date(2026, 1, d).weekday() < 5]
    chunks = history.chunk_days(days, 7)
    assert [len([d for d in days if a <= d <= b]) for a, b in chunks] == [7, 7, 6]
    assert chunks[0][0] == days[0] and chunks[-1][1] == days[-1]
    assert all(b < c for (_, b), (c, _) in zip(chunks, chunks[1:]))
    assert history.chunk_days([], 7) == []


# -- resumability (real PostgreSQL) ---------------------------------------------------------
@pytest.fixture
def url(warehouse_url):
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    return warehouse_url


def _record_unit(url: str, run_id: str, dates: list[str], status: str, codes: list[str] | None = None) -> None:
    unit = {"key": f"dates:{dates[0]}..{dates[-1]}", "kind": "dates",
            "params": {"dates": dates, **({"codes": codes} if codes else {})}}
    with connect(url) as conn, conn.transaction():
        pk = runs.start_run(conn, group_name="jp_daily_quotes", dag_id="jp_daily_quotes", run_id=run_id,
                            interval_start=None, interval_end=None, units=[unit], plan={})
        runs.mark_unit_done(conn, pk, unit["key"], rows=10, requests=2, error=None if status == "success" else "boom")


def _pipe(url):
    from moomarkets.services.verify import resolve

    return resolve(url, "jp_daily_quotes")


def test_days_a_successful_unit_loaded_are_left_out_of_a_history_plan(url):
    # a scheduled run loaded Jan 5-9, a backfill failed on Jan 12-13, a ticker-list unit does not count
    _record_unit(url, "scheduled__1", [f"2026-01-0{d}" for d in range(5, 10)], "success")
    _record_unit(url, "backfill__1", ["2026-01-12", "2026-01-13"], "failed")
    _record_unit(url, "scheduled__2", ["2026-01-14"], "success", codes=["72030"])
    with connect(url) as conn:
        done = history_store.loaded_days(conn, "jp_daily_quotes", date(2026, 1, 1), date(2026, 1, 31))
    assert done == {date(2026, 1, d) for d in range(5, 10)}
    pipe = _pipe(url)
    todo, already = pipeline_history.todo_days(pipe, HistorySpec(date(2026, 1, 5), date(2026, 1, 16)), url)
    assert already == 5 and todo == [date(2026, 1, d) for d in range(12, 17)]
    # redo plans every day again
    todo, already = pipeline_history.todo_days(pipe, HistorySpec(date(2026, 1, 5), date(2026, 1, 16), redo=True), url)
    assert already == 0 and len(todo) == 10


def test_plan_units_maps_multi_day_units_over_the_pool_and_records_the_history(url):
    _record_unit(url, "scheduled__1", ["2026-01-05"], "success")
    pipe = _pipe(url)  # max_concurrency 4
    spec = HistorySpec(date(2026, 1, 5), date(2026, 2, 27))  # 40 weekdays, 1 loaded
    units = pipeline_history.plan_units(pipe, spec, dag_id="jp_daily_quotes", run_id="history__a", url=url,
                                        max_units=1024)
    planned = [d for u in units for d in u["params"]["dates"]]
    assert len(units) == 4 and len(planned) == 39 and "2026-01-05" not in planned
    assert planned == sorted(planned) and len(set(planned)) == 39
    with connect(url) as conn:
        plan = conn.execute("SELECT plan, units_total FROM runs WHERE run_id = 'history__a'").fetchone()
    assert plan["units_total"] == 4
    assert plan["plan"]["history"] == {"from": "2026-01-05", "to": "2026-02-27", "days": 39, "days_already_loaded": 1}
    # max_map_length still caps the units, and unit_days sets their size
    units = pipeline_history.plan_units(pipe, HistorySpec(date(2026, 1, 5), date(2026, 2, 27), unit_days=1),
                                        dag_id="jp_daily_quotes", run_id="history__b", url=url, max_units=16)
    assert len(units) == 13 and all(len(u["params"]["dates"]) == 3 for u in units)  # ceil(39 / 16) days each


@pytest.fixture
def triggered(monkeypatch):
    calls: list[dict] = []

    def trigger(dag_id, **kw):
        calls.append({"dag_id": dag_id, **kw})
        return kw["run_id"]

    monkeypatch.setattr(history.airflow_history, "trigger_history_run", trigger)
    monkeypatch.setattr(history.airflow_history, "unfinished_history_runs", lambda dag_id: [])
    return calls


def test_backfill_history_queues_one_run_per_chunk_with_days_to_load(url, triggered):
    # Jan 5 .. Mar 27: 60 weekdays in chunks of 20; the first chunk was loaded already
    _record_unit(url, "scheduled__1", [d.isoformat() for d in history.pipeline_history.candidate_days(
        _pipe(url), HistorySpec(date(2026, 1, 5), date(2026, 1, 30)), url)], "success")
    request = history.history_request("2026-01-05", "2026-03-27", run_days=20)
    now = datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc)
    out = history.backfill_history(url, "jp_daily_quotes", request, user_name="me", now=now)
    plan = out.value
    assert plan.days == 60 and plan.days_todo == 40 and len(plan.chunks) == 3
    assert [c.todo for c in plan.chunks] == [0, 20, 20] and plan.chunks[0].run_id is None
    assert [c["run_id"] for c in triggered] == [
        "history__2026-02-02__2026-02-27__20260401T120000Z", "history__2026-03-02__2026-03-27__20260401T120000Z"]
    conf = triggered[0]["conf"]["history"]
    assert parse_conf(triggered[0]["conf"]) is not None
    assert conf["batch"] == {"id": "20260401T120000Z", "from": "2026-01-05", "to": "2026-03-27"}
    assert triggered[0]["run_after"] < triggered[1]["run_after"]  # queued in date order
    assert plan.eta_seconds == pytest.approx(40 * 1.0 / 1.0)  # 40 days x 1 request / (60/minute)

    # a dry run queues nothing; everything loaded: nothing is queued, and it says so
    triggered.clear()
    history.backfill_history(url, "jp_daily_quotes", request, user_name="me", dry_run=True)
    assert triggered == []
    _record_unit(url, "history__x", [d.isoformat() for d in history.pipeline_history.candidate_days(
        _pipe(url), HistorySpec(date(2026, 2, 1), date(2026, 3, 31)), url)], "success")
    out = history.backfill_history(url, "jp_daily_quotes", request, user_name="me")
    assert triggered == [] and "loaded already" in out.notes[0]


def test_backfill_history_refuses_while_history_runs_are_unfinished(url, triggered, monkeypatch):
    monkeypatch.setattr(history.airflow_history, "unfinished_history_runs", lambda d: [("history__a", "queued")])
    with pytest.raises(AirflowOpError, match="still queued or running"):
        history.backfill_history(url, "jp_daily_quotes", history.history_request("2026-01-05", "2026-01-09"),
                                 user_name="me")
    assert triggered == []


def test_progress_counts_days_units_rows_and_an_eta_from_the_rate_limit(url):
    batch = {"id": "b1", "from": "2026-01-05", "to": "2026-01-16"}
    unit = {"key": "dates:2026-01-05..2026-01-09", "kind": "dates",
            "params": {"dates": [f"2026-01-0{d}" for d in range(5, 10)]}}
    with connect(url) as conn, conn.transaction():
        pk = runs.start_run(conn, group_name="jp_daily_quotes", dag_id="jp_daily_quotes", run_id="history__b1",
                            interval_start=None, interval_end=None, units=[unit],
                            plan={"history": {"from": "2026-01-05", "to": "2026-01-09", "batch": batch}})
        runs.mark_unit_done(conn, pk, unit["key"], rows=500, requests=10, error=None)
    p = history.history_progress(url, "jp_daily_quotes")
    assert (p["days_total"], p["days_done"], p["units_done"], p["units_total"], p["rows_loaded"]) == (10, 5, 1, 1, 500)
    assert p["requests_per_day"] == 2.0
    assert p["eta_seconds"] == pytest.approx(5 * 2.0 / 1.0)  # 5 days left x 2 requests / 1 per second
    assert json.dumps(p)  # JSON-able for the page and the API
