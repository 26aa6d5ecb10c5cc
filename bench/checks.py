"""What do the data checks cost next to the load they check? (issue: checks after every load)

An embedded PostgreSQL warehouse with the calendar, the issue master and a few weeks of daily
bars of a 4,000-issue market (the local J-Quants v2 fake, ``n_issues=4000``), then, for each of a
few trading days, the daily bars group's one-day run exactly as its tasks run it: ``plan_units``,
``fetch_and_load`` of its one unit (fetched over HTTP from the local fake, upserted), then
``run_checks`` (every check the dataset declares, results saved). Goal: checks <= 10 % of the
unit's load time. The local fake answers in milliseconds, so the real API's load times (and the
ratio's headroom) are larger.

    .venv/bin/python bench/checks.py [--issues 4000] [--days 3] [--history 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "bench-key"
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 100000/minute, max_concurrency: 2}}
job_groups:
  - {name: jp_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 8 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 60}}
  - {name: jp_master, data_source: jquants, dataset: listed_info, schedule: "0 8 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_bars, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
"""


def day_interval(d: date, hour: int = 19) -> tuple[datetime, datetime]:
    return datetime.combine(d - timedelta(days=1), dtime(hour), TOKYO), datetime.combine(d, dtime(hour), TOKYO)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=4000)
    p.add_argument("--days", type=int, default=3, help="one-day runs measured")
    p.add_argument("--history", type=int, default=10, help="business days loaded before them")
    args = p.parse_args()

    from moomarkets.dev.localpg import LocalPostgres, free_port
    from moomarkets.pipeline import GroupPipeline
    from moomarkets.pipeline import checks as data_checks
    from moomarkets.pipeline import run as runner
    from moomarkets.sources.base import Credentials, Interval
    from moomarkets.testing import jquants_data as fd
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake
    from moomarkets.warehouse import check_results
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse import migrate
    from moomarkets.warehouse.db import connect

    days = fd.trading_days(date(2026, 10, 1), date(2026, 12, 31))[: args.history + args.days]
    history, measured = days[: args.history], days[args.history:]
    tmp = Path(tempfile.mkdtemp(prefix="moomarkets-bench-checks-"))
    pg = LocalPostgres(tmp / "data", free_port(), fast_unsafe=True)
    rows_out = []
    try:
        pg.start()
        pg.create_database("bench")
        url = pg.dsn("bench")
        migrate.upgrade(url)
        with connect(url) as conn:
            store.import_config(conn, yaml.safe_load(CONFIG))
            pipes = {s.group.name: GroupPipeline.resolve(s) for s in store.read_specs(conn)}
        with running_fake(FakeConfig(api_key=KEY, n_issues=args.issues)) as (base_url, _):
            creds = Credentials(secret=KEY, host=base_url)

            def run(name: str, iv: tuple[datetime, datetime], run_id: str) -> list[float]:
                pipe = pipes[name]
                units = runner.plan_units(pipe, Interval(*iv), dag_id=name, run_id=run_id, url=url, max_units=1024)
                took = []
                for unit in units:
                    t0 = time.perf_counter()
                    runner.fetch_and_load(pipe, unit, dag_id=name, run_id=run_id, credentials=creds, url=url)
                    took.append(time.perf_counter() - t0)
                return took

            t0 = time.perf_counter()
            run("jp_calendar", day_interval(days[0], 8), "cal")
            run("jp_master", (day_interval(days[0])[0], day_interval(days[-1])[1]), "master")
            run("jp_bars", (day_interval(history[0])[0], day_interval(history[-1])[1]), "history")
            print(f"history: {len(history)} business days x {args.issues} issues loaded in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for d in measured:
                run_id = f"bench_{d}"
                (load_s,) = run("jp_bars", day_interval(d), run_id)
                t0 = time.perf_counter()
                summary = data_checks.run_checks(pipes["jp_bars"], dag_id="jp_bars", run_id=run_id, url=url)
                check_s = time.perf_counter() - t0
                assert summary["status"] == "passed", summary
                with connect(url) as conn:
                    per = {r["check_name"]: r for r in check_results.run_results(conn, "jp_bars", run_id)}
                rows_out.append((d, per["price_sanity"]["checked"], load_s, check_s, per))
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    names = ["price_sanity", "completeness", "adjusted_consistency", "row_count_drop"]
    print(f"\nDaily bars, all listed issues ({args.issues:,}), one-day runs; {args.history} business days of history\n")
    print("| day | rows | unit load (s) | checks (s) | checks / load | " + " | ".join(f"{n} (ms)" for n in names) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(names))
    for d, n, load_s, check_s, per in rows_out:
        print(f"| {d} | {n:,} | {load_s:.3f} | {check_s:.3f} | {check_s / load_s:.1%} | "
              + " | ".join(str(per[x]["elapsed_ms"]) for x in names) + " |")
    ratio = statistics.median(c / lo for _, _, lo, c, _ in rows_out)
    print(f"\nmedian checks / load: {ratio:.1%} (goal <= 10 %)")
    return 0 if ratio <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
