"""Group dependencies at run time: jp_daily_quotes depends on jp_trading_calendar, so a quotes run
loads trading day D only after a successful calendar run covered D, through a deferrable
``wait_for_jp_trading_calendar`` sensor that checks the warehouse, times out visibly and shows up
as a DAG dependency edge in Airflow."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from dagtest import get_dag
from moomarkets.warehouse import config_store
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")
FRIDAY = date(2026, 11, 20)
QUOTES_FRIDAY = datetime(2026, 11, 20, 20, 0, tzinfo=TOKYO)  # loads Fri 2026-11-20
WAIT = "wait_for_jp_trading_calendar"

CALENDAR = """
job_groups:
  - {name: jp_trading_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 30}, is_enabled: true}
"""


@pytest.fixture
def deps_env(group_env):
    """The whole-market quotes group depending on the trading calendar group."""
    with connect(group_env) as conn, conn.transaction():
        config_store.import_config(conn, yaml.safe_load(CALENDAR))
        conn.execute("UPDATE job_groups SET depends_on = '{jp_trading_calendar}', upstream_timeout = '6h'"
                     " WHERE name = 'jp_daily_quotes'")
    return group_env


def upstream_run(url: str, run_id: str, status: str, first: date, last: date) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to, finished_at)"
            " VALUES ('jp_trading_calendar', 'jp_trading_calendar', %s, %s, %s, %s, now())",
            (run_id, status, first, last),
        )


def waits(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT run_id, upstream, trading_day, status, message FROM dependency_waits ORDER BY run_id"
        ).fetchall()


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances() if ti.map_index < 1}


def context(conf: dict | None = None, run_id: str = "manual__test", at: datetime = QUOTES_FRIDAY) -> dict:
    """What the sensor reads from its context: the run's id, conf and data interval."""
    return {"run_id": run_id, "dag_run": SimpleNamespace(conf=conf or {}),
            "data_interval_start": at - timedelta(days=1), "data_interval_end": at - timedelta(hours=1)}


def run_trigger(trigger, during=None):
    """The trigger's first event, as the triggerer would get it (``during`` runs meanwhile)."""
    from moomarkets.airflow.dependencies import UpstreamLoadedTrigger

    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)  # plain JSON: the triggerer stores and rebuilds it
    assert classpath == "moomarkets.airflow.dependencies.UpstreamLoadedTrigger"
    rebuilt = UpstreamLoadedTrigger(**kwargs)
    worker = threading.Thread(target=during) if during else None
    if worker:
        worker.start()

    async def first():
        return await anext(rebuilt.run())

    try:
        return asyncio.run(asyncio.wait_for(first(), 30)).payload
    finally:
        if worker:
            worker.join()


def test_downstream_runs_once_the_upstream_loaded_the_day(deps_env):
    calendar = get_dag("jp_trading_calendar").test(logical_date=datetime(2026, 11, 20, 8, 0, tzinfo=TOKYO))
    assert calendar.state == "success"
    with psycopg.connect(deps_env) as conn:  # (Thu 07:00, Fri 07:00] loads Thursday and 30 days ahead
        assert conn.execute("SELECT status, covers_from, covers_to FROM runs").fetchone() == (
            "success", date(2026, 11, 19), date(2026, 12, 19))
    dag = get_dag("jp_daily_quotes")
    assert dag.get_task(WAIT).downstream_task_ids == {"plan_units"}
    run = dag.test(logical_date=QUOTES_FRIDAY)
    assert run.state == "success"
    assert states(run)[WAIT] == "success" and states(run)["record_run"] == "success"
    assert waits(deps_env) == []  # covered at once: it never waited
    with psycopg.connect(deps_env) as conn:
        assert conn.execute("SELECT status, covers_from, covers_to FROM runs WHERE group_name = 'jp_daily_quotes'"
                            ).fetchone() == ("success", FRIDAY, FRIDAY)
        assert conn.execute("SELECT count(*) FROM daily_quotes WHERE date = %s", (FRIDAY,)).fetchone()[0] > 0


def test_missing_upstream_fails_after_the_limit_naming_upstream_and_day(deps_env, fake, monkeypatch):
    from moomarkets.pipeline import upstreams

    _, state = fake
    # the shortest limit a group accepts is 1m; the test waits 2 s (dag.test runs the trigger in line)
    monkeypatch.setattr(upstreams, "timeout_of", lambda pipe: timedelta(seconds=2))
    dag = get_dag("jp_daily_quotes")
    dag.get_task(WAIT).poke_interval = 0.2
    started = time.monotonic()
    run = dag.test(logical_date=QUOTES_FRIDAY)
    assert time.monotonic() - started < 120
    assert run.state == "failed"
    got = states(run)
    assert got[WAIT] == "failed" and got["plan_units"] == "upstream_failed" and got["record_run"] == "failed"
    message = "upstream jp_trading_calendar did not completely load 2026-11-20 within 2s"
    assert waits(deps_env) == [(run.run_id, "jp_trading_calendar", FRIDAY, "timed_out", message)]
    with psycopg.connect(deps_env) as conn:
        assert conn.execute("SELECT status, error, covers_from FROM runs WHERE run_id = %s", (run.run_id,)
                            ).fetchone() == ("failed", message, FRIDAY)
        assert conn.execute("SELECT last_run_status FROM job_group_status WHERE name = 'jp_daily_quotes'"
                            ).fetchone() == ("failed",)
    assert state.count() == 0  # it never asked J-Quants for anything


def test_wait_is_visible_while_deferred_and_the_trigger_fires_when_the_upstream_loads(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    sensor = get_dag("jp_daily_quotes").get_task(WAIT)
    assert sensor.pool == "default_pool" and sensor.external_dag_id == "jp_trading_calendar"
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    assert deferred.value.method_name == "execute_complete"
    assert waits(deps_env) == [("manual__test", "jp_trading_calendar", FRIDAY, "waiting",
                                "waiting for jp_trading_calendar to completely load 2026-11-20")]
    trigger = deferred.value.trigger
    trigger.poll_seconds = 0.2

    def upstream_loads():
        time.sleep(1)
        upstream_run(deps_env, "scheduled__1", "success", date(2026, 11, 19), date(2027, 11, 24))

    assert run_trigger(trigger, upstream_loads) == {"status": "loaded", "upstream": "jp_trading_calendar"}
    sensor.execute_complete(context(), {"status": "loaded", "upstream": "jp_trading_calendar"})
    assert waits(deps_env)[0][3] == "satisfied"


@pytest.mark.parametrize("status", ["partial", "failed", "running"])
def test_only_a_successful_upstream_run_counts(deps_env, status):
    from airflow.sdk.exceptions import TaskDeferred

    upstream_run(deps_env, "scheduled__1", status, date(2026, 11, 19), date(2027, 11, 24))
    with pytest.raises(TaskDeferred):
        get_dag("jp_daily_quotes").get_task(WAIT).execute(context())
    assert waits(deps_env)[0][2:4] == (FRIDAY, "waiting")


def test_disabled_or_missing_upstream_is_the_reason_and_the_dag_still_builds(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    with psycopg.connect(deps_env) as conn:
        conn.execute("UPDATE job_groups SET is_enabled = false WHERE name = 'jp_trading_calendar'")
    with pytest.raises(TaskDeferred):
        get_dag("jp_daily_quotes").get_task(WAIT).execute(context(run_id="r1"))
    with psycopg.connect(deps_env) as conn:
        conn.execute("UPDATE job_groups SET depends_on = '{jp_ghost}' WHERE name = 'jp_daily_quotes'")
    with pytest.raises(TaskDeferred):
        get_dag("jp_daily_quotes").get_task("wait_for_jp_ghost").execute(context(run_id="r2"))
    assert [w[4] for w in waits(deps_env)] == [
        "waiting for jp_trading_calendar to completely load 2026-11-20 "
        "(upstream job group 'jp_trading_calendar' is disabled)",
        "waiting for jp_ghost to completely load 2026-11-20 (upstream job group 'jp_ghost' does not exist)",
    ]


def test_serialized_dag_has_the_dependency_edge(deps_env):
    from airflow.serialization.serialized_objects import DagSerialization

    deps = DagSerialization.to_dict(get_dag("jp_daily_quotes"))["dag"]["dag_dependencies"]
    assert {"source": "jp_trading_calendar", "target": "jp_daily_quotes", "dependency_type": "sensor",
            "dependency_id": WAIT} in [{k: d[k] for k in ("source", "target", "dependency_type", "dependency_id")}
                                       for d in deps]
    assert "wait_for_jp_trading_calendar" not in get_dag("jp_trading_calendar").task_ids


def test_history_run_waits_for_each_of_its_days(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    sensor = get_dag("jp_daily_quotes").get_task(WAIT)
    conf = {"history": {"from": "2026-11-16", "to": "2026-11-20"}}  # Monday .. Friday
    upstream_run(deps_env, "scheduled__mon", "success", date(2026, 11, 16), date(2026, 11, 17))
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(conf, run_id="history__1"))
    assert waits(deps_env)[0][2] == date(2026, 11, 18)
    trigger = deferred.value.trigger
    assert trigger.days == [f"2026-11-{d}" for d in range(16, 21)]
    trigger.poll_seconds = 0.2
    seen = []

    def upstream_catches_up():
        for day in (18, 19, 20):
            time.sleep(0.8)
            seen.append(waits(deps_env)[0][2])  # the wait row follows the first missing day
            upstream_run(deps_env, f"scheduled__{day}", "success", date(2026, 11, day), date(2026, 11, day))

    assert run_trigger(trigger, upstream_catches_up)["status"] == "loaded"
    assert seen == [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]


def test_trigger_reports_the_timeout_with_the_missing_day(deps_env):
    from moomarkets.airflow.dependencies import UpstreamLoadedTrigger

    past = (datetime.now(TOKYO) - timedelta(seconds=1)).isoformat()
    trigger = UpstreamLoadedTrigger(dag_id="jp_daily_quotes", run_id="r", upstream="jp_trading_calendar",
                                    days=["2026-11-20"], deadline=past, poll_seconds=0.1)
    assert run_trigger(trigger) == {"status": "timed_out", "upstream": "jp_trading_calendar", "day": "2026-11-20"}


def test_disabled_downstream_skips_at_once_instead_of_waiting(deps_env, fake):
    _, state = fake
    with psycopg.connect(deps_env) as conn:  # the calendar never loaded; the quotes group is off
        conn.execute("UPDATE job_groups SET is_enabled = false WHERE name = 'jp_daily_quotes'")
    started = time.monotonic()
    run = get_dag("jp_daily_quotes").test(logical_date=QUOTES_FRIDAY)
    assert time.monotonic() - started < 60
    got = states(run)
    assert got[WAIT] == "success" and got["plan_units"] == "skipped" and got["record_run"] == "skipped"
    with psycopg.connect(deps_env) as conn:
        assert conn.execute("SELECT status, error FROM runs WHERE group_name = 'jp_daily_quotes'").fetchall() == [
            ("skipped", "job group 'jp_daily_quotes' is disabled")]
    assert waits(deps_env) == []  # never waited, so nothing timed out either
    assert state.count() == 0


def test_group_disabled_while_waiting_stops_waiting_and_never_fails(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    sensor = get_dag("jp_daily_quotes").get_task(WAIT)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(run_id="r1"))
    trigger = deferred.value.trigger
    assert trigger.group == "jp_daily_quotes"
    trigger.poll_seconds = 0.2

    def disable():
        time.sleep(0.6)
        with psycopg.connect(deps_env) as conn:
            conn.execute("UPDATE job_groups SET is_enabled = false WHERE name = 'jp_daily_quotes'")

    event = run_trigger(trigger, disable)
    assert event == {"status": "not_runnable", "upstream": "jp_trading_calendar",
                     "reason": "job group 'jp_daily_quotes' is disabled"}
    sensor.execute_complete(context(run_id="r1"), event)  # returns: plan_units records the skip
    # a timed-out event for a group disabled meanwhile does not fail (nor record a failed run) either
    sensor.execute_complete(context(run_id="r1"), {"status": "timed_out", "upstream": "jp_trading_calendar"})
    [(_, _, _, status, message)] = waits(deps_env)
    assert status == "abandoned" and message == "no longer waiting: job group 'jp_daily_quotes' is disabled"
    with psycopg.connect(deps_env) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_trigger_keeps_polling_through_a_warehouse_error(deps_env, monkeypatch, capfd):
    from moomarkets.airflow.dependencies import UpstreamLoadedTrigger
    from moomarkets.pipeline import upstreams

    upstream_run(deps_env, "scheduled__1", "success", date(2026, 11, 19), date(2026, 11, 20))
    real, calls = upstreams.poll, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("connection to server at 127.0.0.1 failed: password=hunter2")
        return real(*args, **kwargs)

    monkeypatch.setattr(upstreams, "poll", flaky)
    future = (datetime.now(TOKYO) + timedelta(minutes=5)).isoformat()
    trigger = UpstreamLoadedTrigger(dag_id="jp_daily_quotes", run_id="r", upstream="jp_trading_calendar",
                                    days=["2026-11-20"], deadline=future, poll_seconds=0.1, group="jp_daily_quotes")
    capfd.readouterr()
    assert run_trigger(trigger) == {"status": "loaded", "upstream": "jp_trading_calendar"}
    assert len(calls) == 2
    out = "".join(capfd.readouterr())  # Airflow's structlog writes to the console
    [warning] = [line for line in out.splitlines() if "warehouse not reachable" in line]
    assert "OperationalError" in warning and "polling again" in warning
    assert "hunter2" not in out and "127.0.0.1" not in out


def test_record_run_abandons_what_the_run_still_waits_for(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    from moomarkets.pipeline import run as runner

    with pytest.raises(TaskDeferred):
        get_dag("jp_daily_quotes").get_task(WAIT).execute(context(run_id="r1"))
    assert waits(deps_env)[0][3] == "waiting"
    # e.g. the run was marked failed by hand: record_run (all_done) still runs and closes the wait
    assert runner.record_run(dag_id="jp_daily_quotes", run_id="r1", url=deps_env)["status"] == "missing"
    assert waits(deps_env)[0][3] == "abandoned"


def test_a_failed_upstream_run_is_the_reason_of_the_wait(deps_env):
    from airflow.sdk.exceptions import TaskDeferred

    upstream_run(deps_env, "scheduled__2026-11-19T22:00:00+00:00", "failed", date(2026, 11, 20), date(2026, 12, 19))
    with psycopg.connect(deps_env) as conn:
        conn.execute("UPDATE runs SET error = 'date:2026-11-20: HTTP 500 from /markets/calendar\nsecond line'")
    with pytest.raises(TaskDeferred):
        get_dag("jp_daily_quotes").get_task(WAIT).execute(context(run_id="r1"))
    assert waits(deps_env)[0][4] == (
        "waiting for jp_trading_calendar to completely load 2026-11-20 (its run "
        "scheduled__2026-11-19T22:00:00+00:00 failed: date:2026-11-20: HTTP 500 from /markets/calendar)")
