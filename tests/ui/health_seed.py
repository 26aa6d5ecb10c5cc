"""Warehouse rows behind the Health page tests (tests/ui/test_ui_health.py, test_browser_health.py):
two groups of one source, one loaded up to today (fresh) and one a month behind (late), units that
met 429s and waited for the rate limit today and yesterday (UTC), and a failed error check; and
``only_reads``: a user with read rights on some DAGs only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import yaml

CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 60/minute, max_concurrency: 2}}
job_groups:
  - {name: hl_fresh, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
  - {name: hl_late, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""
# (days ago in UTC, requests, 429s, seconds waited) of the late group's units
UNITS = [(0, 40, 3, 12.5), (1, 25, 0, 2.0)]


def seed(url: str) -> dict[str, object]:
    """Insert the rows; returns what the page should show (days, per-day values)."""
    from moomarkets.warehouse import check_results, config_store, runs
    from moomarkets.warehouse.db import connect

    today_tokyo = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    today_utc = datetime.now(timezone.utc).date()
    with connect(url) as conn:
        config_store.import_config(conn, yaml.safe_load(CONFIG))
    with connect(url) as conn, conn.transaction():
        # both groups exist for two months (a group is never late for days before it existed)
        conn.execute("UPDATE job_groups SET created_at = now() - interval '60 days' WHERE name LIKE 'hl_%%'")
        # hl_fresh: one successful run covering every day of the last 40 (nothing missing, up to today)
        for group, covers in (("hl_fresh", (today_tokyo - timedelta(days=40), today_tokyo)),
                              ("hl_late", (today_tokyo - timedelta(days=30),) * 2)):
            units = [{"key": f"u{i}", "kind": "dates", "params": {}} for i in range(len(UNITS))]
            pk = runs.start_run(conn, group_name=group, dag_id=group, run_id=f"seed_{group}", interval_start=None,
                                interval_end=None, units=units if group == "hl_late" else [], plan={},
                                covers=covers)
            if group == "hl_late":
                for unit, (ago, requests, h429, wait) in zip(units, UNITS):
                    runs.mark_unit_running(conn, pk, unit)
                    runs.mark_unit_done(conn, pk, unit["key"], rows=10, requests=requests, http_429=h429,
                                        wait_seconds=wait)
                    conn.execute("UPDATE run_units SET finished_at = now() - make_interval(days => %s)"
                                 " WHERE run_pk = %s AND unit_key = %s", (ago, pk, unit["key"]))
            runs.finish_run(conn, pk)
        check_results.save_results(
            conn, group_name="hl_late", dag_id="hl_late", run_id="seed_hl_late", dataset="daily_quotes",
            results=[{"check_name": "completeness", "severity": "error", "passed": False, "failed": 7, "checked": 120,
                      "sample": [], "days": [today_tokyo], "failed_days": [today_tokyo], "thresholds": {},
                      "message": "completeness: 7 of 120 issues missing (e.g. 72030)"},
                     {"check_name": "price_sanity", "severity": "error", "passed": True, "failed": 0, "checked": 120,
                      "sample": [], "days": [today_tokyo], "failed_days": [], "thresholds": {},
                      "message": "price_sanity: passed"}],
        )
    return {"days": {(today_utc - timedelta(days=ago)).isoformat(): (requests, h429, wait)
                     for ago, requests, h429, wait in UNITS},
            "first_day": (today_utc - timedelta(days=6)).isoformat(), "today": today_utc.isoformat(),
            "fresh_day": today_tokyo.isoformat(), "late_day": (today_tokyo - timedelta(days=30)).isoformat()}


def only_reads(monkeypatch, *dag_ids: str) -> None:
    """Airflow's auth manager lets the user read these DAGs only (the pages' general read check still
    passes, as for a user with access to some DAGs); other questions go to the real one (as
    tests/ui/test_ui_security.py makes a limited user)."""
    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    original = am.is_authorized_dag

    def is_authorized_dag(*, method, user, access_entity=None, details=None, **kw):
        dag_id = details.id if details is not None else None
        if method == "GET" and dag_id is not None and dag_id not in dag_ids:
            return False
        return original(method=method, user=user, access_entity=access_entity, details=details, **kw)

    monkeypatch.setattr(am, "is_authorized_dag", is_authorized_dag)
