"""History mode against the per-day Airflow backfill, under the real scheduler (LocalExecutor).

Starts, in a temporary directory on free ports: an embedded PostgreSQL (Airflow metadata and the
warehouse), Airflow's scheduler, dag-processor, triggerer and api-server, and one LOCAL FAKE
J-Quants v2 server per scenario (in this process: n issues, pages as large as the real API's,
the scenario's sliding-window rate limit, 429 above it). Each scenario has its own data source
(same rate limit as its fake, its own pool and shared limiter) and all-listed daily_quotes group,
and runs alone, one after the other:

- ``history``: ``moomarkets backfill G --from D1 --to D2 --history`` (few runs of multi-day units)
- ``per-day``: ``airflow backfill create --dag-id G --from-date D1 --to-date D2 --max-active-runs M``

and measures wall time from the command to the last run's end against the floor
(minimum requests / rate limit), task instances, DAG runs, 429s and rows against the fake's.

    .venv/bin/python bench/history.py [--days 250] [--per-day-days 40] [--issues 4000] [--page-size 2000]
                                      [--slots 4] [--rates light=60/30,premium=500/60]
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moomarkets.dev import processes as procs
from moomarkets.dev import throwaway
from moomarkets.dev.localpg import LocalPostgres, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass
class Scenario:
    label: str  # "light", "premium"
    limit: int  # requests per window
    window: int  # seconds
    mode: str  # "history" | "per-day"
    days: list[date] = field(default_factory=list)
    code: str = ""
    # measured
    wall_s: float = 0.0
    requests: int = 0
    min_requests: int = 0
    http_429: int = 0
    runs: int = 0
    run_states: dict[str, int] = field(default_factory=dict)
    task_instances: int = 0
    rows: int = 0
    rows_expected: int = 0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"bench_{self.code}"

    @property
    def rate(self) -> float:
        return self.limit / self.window

    @property
    def floor_s(self) -> float:
        return self.min_requests / self.rate

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s else float("nan")


def weekdays_ending(last: date, n: int) -> list[date]:
    out, d = [], last
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d -= timedelta(days=1)
    return sorted(out)


class Stack:
    def __init__(self, slots: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="moomarkets-bench-history-"))
        self.pg_port, self.api_port = free_port(), free_port()
        self.names: list[str] = []
        self.pg: LocalPostgres | None = None
        self.slots = slots
        self.ok = False
        self.jwt = secrets.token_urlsafe(64)  # one secret for every component of the stack

    def env(self, conns: dict[str, str]) -> dict[str, str]:
        return throwaway.airflow_env(
            self.tmp, pg_port=self.pg_port, api_port=self.api_port, executor="LocalExecutor",
            jwt_secret=self.jwt, min_file_process_interval=600,
            extra={f"AIRFLOW_CONN_{cid.upper()}": url for cid, url in conns.items()},
        )

    def cli(self, env: dict[str, str], *cmd: str) -> str:
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, cwd=procs.workdir(self.tmp),
                           capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        return r.stdout

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        procs.start(self.tmp, name, cmd, env=env)
        self.names.append(name)

    def wait(self, what: str, check, timeout: float, every: float = 0.5) -> Any:
        return throwaway.wait_until(self.tmp, self.names, what, check, timeout, every)

    def stop(self) -> list[int]:
        if getattr(self, "_stopped", None) is not None:
            return self._stopped
        self._stopped: list[int] = []
        left = throwaway.stop_all(self.tmp, self.names, first=lambda n: n == "scheduler", pg=self.pg)
        if not left and self.ok:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._stopped = left
        return left


def run(args: argparse.Namespace) -> list[Scenario]:
    import psycopg
    import yaml

    from moomarkets.testing import jquants_data as fd
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    rates = []
    for part in args.rates.split(","):
        label, spec = part.split("=")
        limit, window = spec.split("/")
        rates.append((label, int(limit), int(window)))
    # Weekdays of one calendar year, long before the scheduler's own run of the latest interval (the
    # fake caches each issue's bars per year for 4,096 issue-years: one year of 4,000 issues fits).
    last = date(args.year, 12, 19)
    scenarios: list[Scenario] = []
    for label, limit, window in rates:
        for mode, n in (("history", args.days), ("per-day", args.per_day_days)):
            if n:
                s = Scenario(label, limit, window, mode, weekdays_ending(last, n))
                s.code = f"jq_{label}_{mode.replace('-', '')}"
                scenarios.append(s)
    stack = Stack(args.slots)
    key = "fake-" + secrets.token_hex(8)
    expected_cache: dict[date, int] = {}

    def expected_rows(d: date) -> int:
        if d not in expected_cache:
            expected_cache[d] = len(fd.daily_bars_for_date(d, n_issues=args.issues))
        return expected_cache[d]

    from contextlib import ExitStack

    # The fake builds a day's rows on every page request (about 0.2 s for 4,000 issues): that is
    # its cost, not the API's, and it would share our 2 cores with the pipeline under test. Build
    # every day once here, before anything is measured, and serve the copies.
    t = time.monotonic()
    all_days = sorted({d for s in scenarios for d in s.days})
    for d in all_days:
        expected_rows(d)
    print(f"  fake's rows of {len(all_days)} days built in {time.monotonic() - t:.0f} s", flush=True)
    built = {d: fd.daily_bars_for_date(d, n_issues=args.issues) for d in all_days}
    original = fd.daily_bars_for_date

    def served(day, *, n_issues=fd.DEFAULT_N_ISSUES, as_of=None):
        d = fd.to_date(day)
        if as_of is None and n_issues == args.issues and d in built:
            return built[d]
        return original(day, n_issues=n_issues, as_of=as_of)

    fd.daily_bars_for_date = served
    # Likewise its gzip: Starlette's default level 9 costs about 0.15 s of our CPU per 2,000-row page;
    # level 1 keeps the responses compressed (the client still inflates them) at a fifth of that.
    import moomarkets.testing.jquants_fake as fake_module

    gzip_original = fake_module.GZipMiddleware

    class FastGZip(gzip_original):  # type: ignore[misc, valid-type]
        def __init__(self, app, minimum_size: int = 500, compresslevel: int = 9) -> None:
            super().__init__(app, minimum_size=minimum_size, compresslevel=1)

    fake_module.GZipMiddleware = FastGZip
    fakes = ExitStack()
    try:
        with fakes:
            fakes.callback(lambda: stack.stop())  # Airflow stops before the fakes do
            states = {}
            conns = {}
            for s in scenarios:
                cfg = FakeConfig(api_key=key, page_size=args.page_size, n_issues=args.issues,
                                 rate_limit_per_minute=s.limit, rate_limit_window=float(s.window))
                url, state = fakes.enter_context(running_fake(cfg))
                states[s.code] = state
                conns[f"{s.code}_conn"] = json.dumps({"conn_type": "jquants", "host": url, "password": key})
            env = stack.env(conns)
            stack.pg = LocalPostgres(stack.tmp / "pg" / "data", stack.pg_port, fast_unsafe=True)
            stack.pg.start()
            stack.pg.create_database("airflow")
            stack.pg.create_database("moomarkets")
            stack.cli(env, "airflow", "db", "migrate")
            stack.cli(env, "moomarkets", "db", "upgrade")
            config = {
                "data_sources": [{
                    "code": s.code, "name": s.code, "kind": "jquants", "conn_id": f"{s.code}_conn", "is_active": True,
                    "config": {"rate_limit": f"{s.limit}/{s.window}second", "max_concurrency": args.slots},
                } for s in scenarios],
                "job_groups": [{
                    "name": s.group, "data_source": s.code, "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
                    "timezone": "Asia/Tokyo", "parameters": {"universe": "all_listed"}, "is_enabled": True,
                } for s in scenarios],
            }
            (stack.tmp / "bench.yaml").write_text(yaml.safe_dump(config))
            stack.cli(env, "moomarkets", "import", str(stack.tmp / "bench.yaml"))
            stack.cli(env, "moomarkets", "pools", "sync")
            for name in ("scheduler", "dag-processor", "triggerer", "api-server"):
                stack.start(name, [str(BIN / "airflow"), name], env)
            adb = f"postgresql://postgres@127.0.0.1:{stack.pg_port}/airflow"
            wdb = env["MOOMARKETS_DATABASE_URL"]

            def q(sql: str, params: tuple = (), url: str = adb) -> list[tuple]:
                with psycopg.connect(url, autocommit=True) as c:
                    return c.execute(sql, params).fetchall()

            groups = tuple(s.group for s in scenarios)
            stack.wait("every DAG parsed", lambda: len(q("SELECT dag_id FROM serialized_dag WHERE dag_id = ANY(%s)",
                                                         (list(groups),))) == len(groups), 180)
            # the scheduler's own run of each group's latest interval: let it finish, then measure
            stack.wait("the scheduled runs", lambda: q(
                "SELECT count(*) FILTER (WHERE state IN ('success','failed')), count(*) FROM dag_run"
                " WHERE dag_id = ANY(%s)", (list(groups),))[0] in [(len(groups), len(groups))], 300)
            for s in scenarios:
                state = states[s.code]
                before_runs = {r for (r,) in q("SELECT run_id FROM dag_run WHERE dag_id=%s", (s.group,))}
                with state.lock:
                    n0 = len(state.statuses)
                d1, d2 = s.days[0].isoformat(), s.days[-1].isoformat()
                started = datetime.now(ZoneInfo("UTC"))
                t0 = time.monotonic()
                if s.mode == "history":
                    stack.cli(env, "moomarkets", "backfill", s.group, "--from", d1, "--to", d2, "--history")
                else:
                    stack.cli(env, "airflow", "backfill", "create", "--dag-id", s.group, "--from-date", d1,
                              "--to-date", d2, "--max-active-runs", str(args.max_active_runs))

                def finished() -> bool:
                    rows = q("SELECT run_id, state FROM dag_run WHERE dag_id=%s", (s.group,))
                    new = [st for r, st in rows if r not in before_runs]
                    return bool(new) and all(st in ("success", "failed") for st in new)

                stack.wait(f"{s.mode} runs of {s.group}", finished, args.timeout, every=0.25)
                s.wall_s = time.monotonic() - t0
                runs = [(r, st) for r, st in q("SELECT run_id, state FROM dag_run WHERE dag_id=%s", (s.group,))
                        if r not in before_runs]
                s.runs = len(runs)
                s.run_states = {}
                for _, st in runs:
                    s.run_states[st] = s.run_states.get(st, 0) + 1
                s.task_instances = q("SELECT count(*) FROM task_instance WHERE dag_id=%s AND run_id = ANY(%s)",
                                     (s.group, [r for r, _ in runs]))[0][0]
                with state.lock:
                    statuses = list(state.statuses[n0:])
                s.requests, s.http_429 = len(statuses), statuses.count(429)
                s.min_requests = sum(math.ceil(expected_rows(d) / args.page_size) for d in s.days)
                s.rows = q("SELECT count(*) FROM daily_quotes WHERE source=%s AND date BETWEEN %s AND %s",
                           (s.code, s.days[0], s.days[-1]), url=wdb)[0][0]
                s.rows_expected = sum(expected_rows(d) for d in s.days)
                spans = dict((t, (a, b)) for t, a, b in q(
                    "SELECT task_id, min(start_date), max(end_date) FROM task_instance WHERE dag_id=%s"
                    " AND run_id = ANY(%s) GROUP BY task_id", (s.group, [r for r, _ in runs])))
                if s.mode == "history" and {"plan_units", "fetch_and_load", "record_run"} <= set(spans):
                    plan_a, plan_b = spans["plan_units"]
                    fetch_a, fetch_b = spans["fetch_and_load"]
                    s.phases = {"until plan_units starts": (plan_a - started).total_seconds(),
                                "plan_units": (plan_b - plan_a).total_seconds(),
                                "plan end -> fetch_and_load end": (fetch_b - plan_b).total_seconds(),
                                "restate + check + record": (spans["record_run"][1] - fetch_b).total_seconds()}
                    print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in s.phases.items()), flush=True)
                print(f"  {s.label:<8} {s.mode:<8} {len(s.days)} days: {s.wall_s:.1f} s, {s.runs} runs, "
                      f"{s.task_instances} TIs, {s.requests} requests, {s.http_429} x 429, rows {s.rows}/{s.rows_expected}",
                      flush=True)
            stack.ok = True
    finally:
        fd.daily_bars_for_date = original
        fake_module.GZipMiddleware = gzip_original
        left = stack.stop()
        if left:
            print(f"warning: {len(left)} process(es) left: {left}", file=sys.stderr)
    return scenarios


def table(scenarios: list[Scenario], args: argparse.Namespace) -> str:
    lines = [
        f"all listed issues ({args.issues}), daily_quotes, {args.page_size} rows per page (a day in "
        f"{math.ceil(args.issues / args.page_size)} page(s)), pool slots {args.slots}, LocalExecutor, 2 cores;",
        "rate limit = the fake's sliding window = the source's rate_limit; floor = minimum requests / rate",
        f"(per-day: airflow backfill create --max-active-runs {args.max_active_runs})",
        "",
        "| limit | path | trading days | DAG runs | task instances | goal TIs <= days/20 | requests (min) "
        "| floor (s) | wall (s) | wall / floor | 429s | rows / fake's |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.limit}/{s.window}s ({s.label}) | {s.mode} | {len(s.days)} | {s.runs} | {s.task_instances} "
            f"| {len(s.days) / 20:.1f} | {s.requests} ({s.min_requests}) | {s.floor_s:.1f} | {s.wall_s:.1f} "
            f"| {s.ratio:.2f} | {s.http_429} | {s.rows:,} / {s.rows_expected:,} {'=' if s.rows == s.rows_expected else '!='} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=250, help="trading days of the history-mode load")
    ap.add_argument("--per-day-days", type=int, default=40, help="trading days of the per-day backfill")
    ap.add_argument("--issues", type=int, default=4000)
    ap.add_argument("--page-size", type=int, default=2000)
    ap.add_argument("--slots", type=int, default=4, help="the source's max_concurrency (pool slots)")
    ap.add_argument("--max-active-runs", type=int, default=8, help="per-day backfill's parallel runs")
    ap.add_argument("--rates", default="light=60/30,premium=500/60",
                    help="label=LIMIT/WINDOW_SECONDS,... (fake and source)")
    ap.add_argument("--year", type=int, default=2025, help="the trading days end on Dec 19 of this year")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    scenarios = run(args)
    print()
    print(table(scenarios, args))
    print(f"\nwhole benchmark incl. start and stop: {time.monotonic() - t0:.0f} s")
    ok = all(s.http_429 == 0 and s.rows == s.rows_expected for s in scenarios)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
