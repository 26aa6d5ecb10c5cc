"""How many J-Quants requests does a plan cost? (issue: the cheapest request plan)

Runs the real planner and the real client against the local J-Quants v2 fake and counts the
HTTP requests the fake received for "all listed issues, daily bars, 20 trading days", then
divides by the minimum possible (sum over days of the pages that day needs). Goal: 1.00. Beside
it: what the naive per-code plan (one code + from/to request per issue) would cost.

    .venv/bin/python bench/jquants_requests.py [--issues 2000] [--page-size 500]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from moomarkets.sources.base import Credentials, Interval
from moomarkets.testing import jquants_data as fakedata
from moomarkets.testing.jquants_fake import FakeConfig, running_fake
from moomarkets.sources.jquants import JQuantsSource

TOKYO = ZoneInfo("Asia/Tokyo")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=2000)
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument("--days", type=int, default=20)
    args = p.parse_args()

    first = date(2026, 10, 1)
    days = fakedata.trading_days(first, date(2026, 12, 31))[: args.days]
    interval = Interval(
        datetime.combine(days[0] - timedelta(days=1), dtime(19, 0), TOKYO),
        datetime.combine(days[-1], dtime(19, 0), TOKYO),
    )
    cfg = FakeConfig(api_key="bench-key", page_size=args.page_size, n_issues=args.issues)
    with running_fake(cfg) as (base_url, state):
        source = JQuantsSource("jquants", {}, Credentials(secret="bench-key", host=base_url))
        cal = lambda a, b: [d for d in fakedata.trading_days(a, b)]  # noqa: E731 - calendar table stand-in
        units = source.plan("daily_quotes", {"universe": "all_listed"}, interval, max_units=1024, business_days=cal)
        started = time.monotonic()
        rows = 0
        for unit in units:
            rows += len(source.fetch("daily_quotes", unit).rows)
        elapsed = time.monotonic() - started
        issued = state.count("/equities/bars/daily")
    per_day = [len(fakedata.daily_bars_for_date(d, n_issues=args.issues)) for d in days]
    minimum = sum(max(1, math.ceil(n / args.page_size)) for n in per_day)
    codes = {r["Code"] for d in days for r in fakedata.daily_bars_for_date(d, n_issues=args.issues)}
    per_code = len(codes)  # one code+from/to request each (20 rows fit one page)

    print(f"all listed issues, daily bars, {len(days)} trading days ({days[0]} .. {days[-1]}), "
          f"{args.issues} issues, page size {args.page_size}\n")
    print("| plan | units | requests | minimum (days x pages) | ratio | rows | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| ours (by date) | {len(units)} | {issued} | {minimum} | {issued / minimum:.2f} | {rows} | {elapsed:.1f} |")
    print(f"| per code (naive) | {per_code} | {per_code} | {minimum} | {per_code / minimum:.2f} | - | - |")
    ok = issued == minimum and rows == sum(per_day)
    print(f"\ngoal: ratio 1.00 and every row loaded: {'met' if ok else 'NOT met'}")
    print(f"at the Free plan (5/min) the per-code plan takes {per_code / 5:.0f} min, ours {issued / 5:.0f} min; "
          f"at Light (60/min): {per_code / 60:.1f} vs {issued / 60:.1f} min")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
