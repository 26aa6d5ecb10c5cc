"""Group dependencies hold for backfills alike, with the real components.

A throwaway stack (embedded PostgreSQL, Airflow's scheduler with the LocalExecutor, dag-processor,
triggerer and api-server, the LOCAL FAKE J-Quants server in this process) runs two groups:
``t_calendar`` (trading_calendar, 07:00 Tokyo, 10 days ahead) and ``t_quotes`` (daily_quotes of
three tickers, 19:00 Tokyo on weekdays, ``depends_on: [t_calendar]``).

1. ``airflow backfill create`` of t_quotes over 3 trading days (a week or more ago, so the
   scheduler's own runs of the latest intervals never cover them);
2. each of its runs defers in ``wait_for_t_calendar`` (the wait recorded as ``waiting``) and loads
   no row;
3. ``airflow backfill create`` of t_calendar over the first of those days: one run, which covers
   its ``days_ahead`` and so all three days;
4. the triggerer notices, every t_quotes backfill run succeeds, the warehouse holds exactly the
   three days' bars and every wait of those runs is ``satisfied``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
import yaml
from moomarkets.dev import processes as procs
from moomarkets.dev import throwaway
from moomarkets.dev.localpg import LocalPostgres, free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]

BIN = Path(sys.executable).parent
TOKYO = ZoneInfo("Asia/Tokyo")
TICKERS = ["72030", "13010", "67580"]
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
CONFIG = {
    "data_sources": [{
        "code": "jquants", "name": "J-Quants", "kind": "jquants", "conn_id": "jquants_default", "is_active": True,
        "config": {"rate_limit": "600/minute", "max_concurrency": 4},
    }],
    "job_groups": [
        {"name": "t_calendar", "data_source": "jquants", "dataset": "trading_calendar", "schedule": "0 7 * * *",
         "timezone": "Asia/Tokyo", "parameters": {"days_ahead": 10}, "is_enabled": True},
        {"name": "t_quotes", "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
         "timezone": "Asia/Tokyo", "parameters": {"tickers": TICKERS}, "is_enabled": True,
         "depends_on": ["t_calendar"], "upstream_timeout": "30m"},
    ],
}


def three_trading_days(today: date) -> list[date]:
    """The latest 3 consecutive trading days ending a week or more before ``today`` with no weekday
    holiday between them, so a backfill of first..last creates exactly their 3 runs."""
    from moomarkets.testing.jpx_calendar import trading_days

    days = trading_days(today - timedelta(days=40), today - timedelta(days=7))
    for i in range(len(days) - 3, -1, -1):
        window = days[i:i + 3]
        weekdays = [window[0] + timedelta(days=n) for n in range((window[-1] - window[0]).days + 1)]
        if [d for d in weekdays if d.weekday() < 5] == window:
            return window
    raise AssertionError(f"no 3 consecutive trading days before {today}")


class Stack:
    def __init__(self) -> None:
        self.local = Path(tempfile.mkdtemp(prefix="moomarkets-backfill-deps-")).resolve()
        self.pg_port, self.api_port = free_port(), free_port()
        self.names: list[str] = []
        self.pg: LocalPostgres | None = None

    def cli(self, env: dict[str, str], *cmd: str) -> str:
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, cwd=procs.workdir(self.local),
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}"
        return r.stdout

    def start(self, name: str, env: dict[str, str]) -> None:
        procs.start(self.local, name, [str(BIN / "airflow"), name], env=env)
        self.names.append(name)

    def wait(self, what: str, check, timeout: float) -> object:
        return throwaway.wait_until(self.local, self.names, what, check, timeout, every=1)

    def stop(self) -> list[int]:
        return throwaway.stop_all(self.local, self.names, first=lambda n: n == "scheduler", pg=self.pg)


def test_a_backfill_waits_for_its_upstream_backfill_through_the_triggerer(capsys):
    from moomarkets.testing import jquants_data as fd
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    days = three_trading_days(datetime.now(TOKYO).date())
    stack = Stack()
    key = "fake-" + secrets.token_hex(8)
    ok = False
    t0 = time.monotonic()
    try:
        with running_fake(FakeConfig(api_key=key)) as (fake_url, _state):
            env = throwaway.airflow_env(
                stack.local, pg_port=stack.pg_port, api_port=stack.api_port, executor="LocalExecutor",
                jwt_secret=secrets.token_urlsafe(64), min_file_process_interval=600,
                extra={"AIRFLOW_CONN_JQUANTS_DEFAULT": json.dumps(
                    {"conn_type": "jquants", "host": fake_url, "password": key})},
            )
            stack.pg = LocalPostgres(stack.local / "pg" / "data", stack.pg_port, fast_unsafe=True)
            stack.pg.start()
            stack.pg.create_database("airflow")
            stack.pg.create_database("moomarkets")
            stack.cli(env, "airflow", "db", "migrate")
            stack.cli(env, "moomarkets", "db", "upgrade")
            (stack.local / "groups.yaml").write_text(yaml.safe_dump(CONFIG))
            stack.cli(env, "moomarkets", "import", str(stack.local / "groups.yaml"))
            stack.cli(env, "moomarkets", "pools", "sync")
            for name in COMPONENTS:
                stack.start(name, env)
            adb = f"postgresql://postgres@127.0.0.1:{stack.pg_port}/airflow"
            wdb = env["MOOMARKETS_DATABASE_URL"]

            def q(sql: str, params: tuple = (), url: str = adb) -> list[tuple]:
                with psycopg.connect(url, autocommit=True) as c:
                    return c.execute(sql, params).fetchall()

            stack.wait("both DAGs parsed", lambda: len(q(
                "SELECT dag_id FROM serialized_dag WHERE dag_id IN ('t_calendar', 't_quotes')")) == 2, 150)
            stack.wait("the api-server", lambda: requests.get(
                f"http://localhost:{stack.api_port}/api/v2/monitor/health", timeout=2).status_code == 200, 120)
            stack.wait("the triggerer", lambda: q("SELECT 1 FROM job WHERE job_type = 'TriggererJob'"
                                                 " AND state = 'running'"), 60)
            t_up = time.monotonic() - t0

            def backfill_runs(dag_id: str) -> list[tuple[str, str]]:
                return q("SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_type = 'backfill'"
                         " ORDER BY logical_date", (dag_id,))

            def task_states(dag_id: str, task_id: str) -> dict[str, str]:
                return dict(q("SELECT run_id, state FROM task_instance WHERE dag_id = %s AND task_id = %s",
                              (dag_id, task_id)))

            def quotes_rows() -> set[tuple[str, date]]:
                return set(q("SELECT code, date FROM daily_quotes WHERE source = 'jquants' AND date BETWEEN %s AND %s",
                             (days[0] - timedelta(days=3), days[-1] + timedelta(days=3)), url=wdb))

            # (1) the downstream group first: its runs must wait for their own days
            stack.cli(env, "airflow", "backfill", "create", "--dag-id", "t_quotes",
                      "--from-date", days[0].isoformat(), "--to-date", days[-1].isoformat())
            runs = [r for r, _ in backfill_runs("t_quotes")]
            assert len(runs) == 3, backfill_runs("t_quotes")

            # (2) every run defers in its sensor (no worker slot held) and records the wait
            try:
                stack.wait("t_quotes backfill runs deferred in wait_for_t_calendar", lambda: all(
                    task_states("t_quotes", "wait_for_t_calendar").get(r) == "deferred" for r in runs), 120)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}\n{task_states('t_quotes', 'wait_for_t_calendar')}") from None
            waits = q("SELECT run_id, status, trading_day FROM dependency_waits WHERE dag_id = 't_quotes'"
                      " AND upstream = 't_calendar' AND run_id = ANY(%s) ORDER BY trading_day", (runs,), url=wdb)
            assert [(r, s) for r, s, _ in waits] == [(r, "waiting") for r in runs], waits
            assert [d for _, _, d in waits] == days, waits
            assert quotes_rows() == set()
            planned = task_states("t_quotes", "plan_units")
            assert {r: planned.get(r) for r in runs} == {r: None for r in runs}  # not even started
            t_deferred = time.monotonic() - t0

            # (3) the upstream group's backfill: one calendar run covers its day and 10 days ahead
            stack.cli(env, "airflow", "backfill", "create", "--dag-id", "t_calendar",
                      "--from-date", days[0].isoformat(), "--to-date", days[0].isoformat())
            calendar_runs = [r for r, _ in backfill_runs("t_calendar")]
            assert len(calendar_runs) == 1, backfill_runs("t_calendar")

            # (4) the triggerer sees the days covered; the runs load them
            def finished() -> bool:
                states = [s for _, s in backfill_runs("t_quotes")] + [s for _, s in backfill_runs("t_calendar")]
                return all(s in ("success", "failed") for s in states)

            try:
                stack.wait("t_quotes and t_calendar backfill runs finished", finished, 240)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}\nt_quotes: {backfill_runs('t_quotes')}\n"
                                     f"t_calendar: {backfill_runs('t_calendar')}") from None
            assert backfill_runs("t_calendar") == [(calendar_runs[0], "success")]
            assert backfill_runs("t_quotes") == [(r, "success") for r in runs], q(
                "SELECT run_id, task_id, map_index, state FROM task_instance WHERE dag_id = 't_quotes'"
                " AND run_id = ANY(%s) ORDER BY 1, 2", (runs,))
            t_done = time.monotonic() - t0
            # each sensor resumed from its deferral (first try, no retry), and nothing was planned before
            # the calendar run had finished
            sensors = q("SELECT run_id, state, try_number FROM task_instance WHERE dag_id = 't_quotes'"
                        " AND task_id = 'wait_for_t_calendar' AND run_id = ANY(%s) ORDER BY run_id", (runs,))
            assert sensors == sorted((r, "success", 1) for r in runs), sensors
            ((calendar_end,),) = q("SELECT finished_at FROM runs WHERE dag_id = 't_calendar' AND run_id = %s",
                                   (calendar_runs[0],), url=wdb)
            ((first_plan,),) = q("SELECT min(start_date) FROM task_instance WHERE dag_id = 't_quotes'"
                                 " AND task_id = 'plan_units' AND run_id = ANY(%s)", (runs,))
            assert first_plan > calendar_end, (calendar_end, first_plan)

            covered = q("SELECT covers_from, covers_to, status FROM runs WHERE dag_id = 't_calendar' AND run_id = %s",
                        (calendar_runs[0],), url=wdb)
            assert covered == [(days[0], days[0] + timedelta(days=10), "success")], covered
            expected = {(row["Code"], date.fromisoformat(row["Date"])) for code in TICKERS
                        for row in fd.daily_bars_for_code(code, days[0], days[-1])}
            assert {d for _, d in expected} == set(days)
            assert quotes_rows() == expected
            waits = q("SELECT run_id, status FROM dependency_waits WHERE dag_id = 't_quotes' AND run_id = ANY(%s)"
                      " ORDER BY run_id", (runs,), url=wdb)
            assert waits == sorted((r, "satisfied") for r in runs), waits
            ok = True
    finally:
        t_stop = time.monotonic()
        left = stack.stop()
        if ok and not left:
            shutil.rmtree(stack.local, ignore_errors=True)
    assert left == [], f"processes left behind: {left}"
    with capsys.disabled():
        print(f"\n  backfill deps ({days[0]}..{days[-1]}): up {t_up:.0f} s, deferred at {t_deferred:.0f} s,"
              f" done at {t_done:.0f} s, stop {time.monotonic() - t_stop:.0f} s\n")
