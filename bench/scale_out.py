"""Scale-out proof on this machine: CeleryExecutor with a Redis broker and two Celery workers.

Starts Debian's redis-server, the embedded PostgreSQL, Airflow's components and two Celery workers
with different hostnames, loads a whole-market daily_quotes group over several trading days from
the LOCAL FAKE J-Quants v2 server held to a strict rate limit, prints a table (task instances per
worker, peak concurrent tasks per pool against its slots, requests, 429s, rows loaded against
expected, wall time) and stops everything it started (see moomarkets.dev.scaleout).

    .venv/bin/python bench/scale_out.py [--days 5] [--workers 2] [--concurrency 2] [--slots 2]
                                        [--issues 400] [--page-size 100] [--rate 6 --window 3]
"""

from __future__ import annotations

import argparse
import sys

from moomarkets.dev.scaleout import BrokerUnavailable, Settings, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--issues", type=int, default=400)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--rate", type=int, default=6, help="requests per --window seconds (fake server and source)")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=480)
    a = ap.parse_args(argv)
    try:
        result = run(Settings(days=a.days, workers=a.workers, concurrency=a.concurrency, pool_slots=a.slots,
                              n_issues=a.issues, page_size=a.page_size, rate_limit=a.rate, rate_window=a.window,
                              timeout=a.timeout))
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    ok = (result.http_429 == 0 and result.rows_loaded == result.rows_expected and len(result.tis_per_worker) >= 2
          and all(peak <= slots for _, peak, slots in result.pools) and set(result.runs) == {"success"}
          and not result.leftovers)
    print("\nOK" if ok else "\nFAILED: see the table", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
