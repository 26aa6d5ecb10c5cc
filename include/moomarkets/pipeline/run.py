"""What each task of a group's DAG does, as plain functions (no Airflow imports).

The Airflow layer (``moomarkets.airflow.factory``) wraps these in ``@task``s; tests call them directly.
"""

from __future__ import annotations

import logging
import time as _time
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from moomarkets.warehouse import runs as storage
from moomarkets.config.models import GroupSpec
from moomarkets.warehouse.datasets import get_dataset
from moomarkets.warehouse.db import connect
from moomarkets.errors import MooMarketsError, PermanentSourceError, RetryableSourceError
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.sources.registry import get_source_class

log = logging.getLogger(__name__)


def scrub(text: str, *secrets: str | None) -> str:
    """Remove secrets from a message before it is stored, logged or shown."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def group_is_runnable(url: str, group_name: str) -> tuple[bool, str]:
    """Live check (not the parse-time copy): is the group enabled and its source active?"""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT g.is_enabled, s.is_active, s.code FROM job_groups g"
            " JOIN data_sources s ON s.id = g.data_source_id WHERE g.name = %s",
            (group_name,),
        ).fetchone()
    if row is None:
        return False, f"job group {group_name!r} no longer exists"
    if not row["is_enabled"]:
        return False, f"job group {group_name!r} is disabled"
    if not row["is_active"]:
        return False, f"data source {row['code']!r} is inactive"
    return True, ""


def calendar_lookup(url: str, source_code: str):
    """Business days from the ``trading_calendar`` table, or None when it does not cover the range.

    HolDiv 1 (business day) and 2 (half day) trade cash equities; 0 and 3 do not.
    """

    def business_days(start, end):
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT date, hol_div FROM trading_calendar WHERE source = %s AND date BETWEEN %s AND %s",
                (source_code, start, end),
            ).fetchall()
        if len(rows) < (end - start).days + 1:
            return None
        return [r["date"] for r in rows if r["hol_div"] in (1, 2)]

    return business_days


def plan_units(
    spec: GroupSpec,
    interval: Interval,
    *,
    dag_id: str,
    run_id: str,
    url: str,
    max_units: int,
) -> list[dict[str, Any]]:
    """Ask the source for the cheapest units for the interval and open the run record."""
    assert spec.source is not None
    cls = get_source_class(spec.source.kind)
    source = cls(spec.source.code, spec.source.config, Credentials())
    units = source.plan(
        spec.group.dataset,
        spec.group.parameters,
        interval,
        max_units=max_units,
        business_days=calendar_lookup(url, spec.source.code),
    )
    if len(units) > max_units:  # a source bug must not surface as Airflow's cryptic mapping error
        raise MooMarketsError(f"plan produced {len(units)} units, more than max_map_length={max_units}")
    payload = [u.to_dict() for u in units]
    with connect(url) as conn, conn.transaction():
        storage.start_run(
            conn,
            group_name=spec.group.name,
            dag_id=dag_id,
            run_id=run_id,
            interval_start=interval.start,
            interval_end=interval.end,
            units=payload,
            plan={"units": len(payload), "kinds": sorted({u.kind for u in units})},
        )
    log.info(
        "planned %d unit(s) for %s %s..%s", len(payload), spec.group.name, interval.start.isoformat(),
        interval.end.isoformat(),
    )
    return payload


def make_limiter(spec: GroupSpec, url: str):
    """The source's shared (cross-worker) rate limiter."""
    from moomarkets.ratelimit import SourceRateLimiter

    assert spec.source is not None
    cls = get_source_class(spec.source.kind)
    return SourceRateLimiter(spec.source.code, cls.rate_limit(spec.source.config), url)


def fetch_and_load(
    spec: GroupSpec,
    unit_dict: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    credentials: Credentials,
    url: str,
    limiter=None,
) -> dict[str, Any]:
    """Fetch one unit and upsert its rows in one transaction; record the unit either way.

    Returns a small summary (safe for XCom). Re-raises the failure after recording it, so the
    task layer can retry it or fail it.
    """
    assert spec.source is not None
    unit = FetchUnit.from_dict(unit_dict)
    dataset = get_dataset(spec.group.dataset)
    with connect(url) as conn:
        run_pk = storage.find_run(conn, dag_id, run_id)
        if run_pk is None:
            raise MooMarketsError(f"no run record for {dag_id}/{run_id}: run the plan task first")
        with conn.transaction():
            storage.mark_unit_running(conn, run_pk, unit_dict)
    started = _time.monotonic()
    requests = 0
    with ExitStack() as stack:
        if limiter is None:
            limiter = make_limiter(spec, url)
            stack.callback(limiter.close)
        cls = get_source_class(spec.source.kind)
        source = cls(
            spec.source.code, spec.source.config, credentials, acquire=limiter.acquire, on_throttle=limiter.penalize
        )
        try:
            result = source.fetch(spec.group.dataset, unit)
            requests = result.requests
            with connect(url) as conn, conn.transaction():
                changed = storage.upsert_rows(conn, dataset, result.rows)
                error = None
                if result.item_errors:
                    error = "; ".join(f"{k}: {v}" for k, v in sorted(result.item_errors.items()))
                storage.mark_unit_done(
                    conn, run_pk, unit.key, rows=len(result.rows), requests=requests,
                    error=scrub(error, credentials.secret) if error else None,
                )
                storage.refresh_run_progress(conn, run_pk)
        except Exception as exc:
            message = scrub(f"{type(exc).__name__}: {exc}", credentials.secret)[:2000]
            with connect(url) as conn, conn.transaction():
                storage.mark_unit_done(conn, run_pk, unit.key, rows=0, requests=requests, error=message)
                storage.refresh_run_progress(conn, run_pk)
            raise
    summary = {
        "unit": unit.key,
        "rows": len(result.rows),
        "changed": changed,
        "requests": requests,
        "seconds": round(_time.monotonic() - started, 3),
        "item_errors": len(result.item_errors),
    }
    log.info("loaded %s: %d rows (%d new or changed), %d request(s)", unit.key, summary["rows"], changed, requests)
    if result.item_errors:
        cls = RetryableSourceError if result.retryable_items else PermanentSourceError
        raise cls(f"{unit.key}: {len(result.item_errors)} item(s) failed: {error}")
    return summary


def record_run(*, dag_id: str, run_id: str, url: str) -> dict[str, Any]:
    """Close the run record from its units and return the summary (status "missing" when none)."""
    empty = {"units_total": 0, "units_failed": 0, "rows_loaded": 0, "failed_units": []}
    with connect(url) as conn, conn.transaction():
        row = conn.execute("SELECT id, status FROM runs WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)).fetchone()
        if row is None:
            return {"status": "missing", **empty}
        if row["status"] == "skipped":
            return {"status": "skipped", **empty}
        return storage.finish_run(conn, row["id"])


def record_skipped(*, spec: GroupSpec, dag_id: str, run_id: str, url: str, reason: str, interval: Interval) -> None:
    with connect(url) as conn, conn.transaction():
        run_pk = storage.start_run(
            conn, group_name=spec.group.name, dag_id=dag_id, run_id=run_id, interval_start=interval.start,
            interval_end=interval.end, units=[], plan={"skipped": reason}, status="skipped",
        )
        conn.execute("UPDATE runs SET error = %s, finished_at = now() WHERE id = %s", (reason, run_pk))


def as_interval(start: datetime, end: datetime) -> Interval:
    return Interval(start=start, end=end)
