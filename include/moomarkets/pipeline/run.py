"""What each task of a group's DAG does, as plain functions over a :class:`GroupPipeline`.

The Airflow layer (``moomarkets.airflow.factory``) wraps these in ``@task``s; tests call them
directly. Every write to run records lives in ``moomarkets.warehouse.runs``.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from moomarkets.errors import MooMarketsError, PermanentSourceError, RetryableSourceError, scrub
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.warehouse import check_results, dependencies, loads, restatements, runs, trading_calendar
from moomarkets.warehouse.db import connect

if TYPE_CHECKING:
    from moomarkets.ratelimit import SourceRateLimiter

log = logging.getLogger(__name__)

ERROR_TEXT_MAX = 2000  # characters of a unit's error kept in run_units


def group_is_runnable(url: str, group_name: str) -> tuple[bool, str]:
    """Live check (not the parse-time copy): is the group enabled and its source active?"""
    with connect(url) as conn:
        return runs.group_runnable(conn, group_name)


def calendar_lookup(url: str, source_code: str):
    """A ``business_days(start, end)`` callable for the source's planner, backed by the warehouse."""

    def business_days(start, end):
        with connect(url) as conn:
            return trading_calendar.business_days(conn, source_code, start, end)

    return business_days


def plan_units(
    pipe: GroupPipeline, interval: Interval, *, dag_id: str, run_id: str, url: str, max_units: int
) -> list[dict[str, Any]]:
    """Ask the source for the cheapest units for the interval and open the run record."""
    units = pipe.source().plan(
        pipe.group.dataset,
        pipe.group.parameters,
        interval,
        max_units=max_units,
        business_days=calendar_lookup(url, pipe.source_code),
    )
    if len(units) > max_units:  # a source bug must not surface as Airflow's cryptic mapping error
        raise MooMarketsError(f"plan produced {len(units)} units, more than max_map_length={max_units}")
    payload = [u.to_dict() for u in units]
    with connect(url) as conn, conn.transaction():
        runs.start_run(
            conn,
            group_name=pipe.name,
            dag_id=dag_id,
            run_id=run_id,
            interval_start=interval.start,
            interval_end=interval.end,
            units=payload,
            plan={"units": len(payload), "kinds": sorted({u.kind for u in units})},
            covers=pipe.covered_days(interval),
        )
    log.info("planned %d unit(s) for %s %s..%s", len(payload), pipe.name, interval.start.isoformat(),
             interval.end.isoformat())
    return payload


def fetch_and_load(
    pipe: GroupPipeline,
    unit_dict: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    credentials: Credentials,
    url: str,
    limiter: SourceRateLimiter | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fetch one unit and upsert its rows in one transaction; record the unit either way.

    Returns a small summary (safe for XCom). Re-raises the failure after recording it, so the
    task layer can retry it or fail it. ``report`` gets the summary of every attempt, failed ones
    too (status, rows, what the requests met), before it returns or raises: the task layer emits
    metrics from it.
    """
    unit = FetchUnit.from_dict(unit_dict)
    with connect(url) as conn:
        run_pk = runs.find_run(conn, dag_id, run_id)
        if run_pk is None:
            raise MooMarketsError(f"no run record for {dag_id}/{run_id}: run the plan task first")
        with conn.transaction():
            runs.mark_unit_running(conn, run_pk, unit_dict)
    started = time.monotonic()
    with ExitStack() as stack:
        if limiter is None:
            limiter = pipe.limiter(url)
            stack.callback(limiter.close)
        source = pipe.source(credentials, limiter)
        try:
            asked = datetime.now(timezone.utc)  # the as-of of the rows' adjusted values
            result = source.fetch(pipe.group.dataset, unit)
            # when we learned of any corporate action in these rows: stamped after the fetch, so
            # rows another unit asked for while this fetch ran count as possibly stale
            detected = datetime.now(timezone.utc)
            error = None
            if result.item_errors:
                error = scrub("; ".join(f"{k}: {v}" for k, v in sorted(result.item_errors.items())),
                              credentials.secret)
            with connect(url) as conn, conn.transaction():
                changed = loads.upsert_rows(conn, pipe.dataset, result.rows, as_of=asked)
                # corporate actions seen: the run's restate step brings earlier history in line
                restatements.record_detected(
                    conn, source=pipe.source_code, dataset=pipe.group.dataset,
                    actions=source.corporate_actions(pipe.group.dataset, result), dag_id=dag_id, run_id=run_id,
                    as_of=detected,
                )
                runs.mark_unit_done(conn, run_pk, unit.key, rows=len(result.rows), error=error,
                                    **source.counters.to_dict())
                runs.refresh_run_progress(conn, run_pk)
        except Exception as exc:
            message = scrub(f"{type(exc).__name__}: {exc}", credentials.secret)[:ERROR_TEXT_MAX]
            with connect(url) as conn, conn.transaction():
                runs.mark_unit_done(conn, run_pk, unit.key, rows=0, error=message, **source.counters.to_dict())
                runs.refresh_run_progress(conn, run_pk)
            if report is not None:
                report(_unit_summary(unit, "failed", 0, 0, source.counters.to_dict(), started))
            raise
    summary = _unit_summary(unit, "failed" if error else "success", len(result.rows), changed,
                            source.counters.to_dict(), started, item_errors=len(result.item_errors))
    if report is not None:
        report(summary)
    log.info("loaded %s: %d rows (%d new or changed), %d request(s)", unit.key, summary["rows"], changed,
             summary["requests"])
    if result.item_errors:
        cls = RetryableSourceError if result.retryable_items else PermanentSourceError
        raise cls(f"{unit.key}: {len(result.item_errors)} item(s) failed: {error}")
    return summary


def _unit_summary(unit: FetchUnit, status: str, rows: int, changed: int, counters: dict[str, Any], started: float,
                  item_errors: int = 0) -> dict[str, Any]:
    """A unit attempt's summary (XCom-safe): what it loaded and what its requests met."""
    return {"unit": unit.key, "status": status, "rows": rows, "changed": changed, **counters,
            "seconds": round(time.monotonic() - started, 3), "item_errors": item_errors}


def record_run(*, dag_id: str, run_id: str, url: str, unfinished: list[str] | None = None) -> dict[str, Any]:
    """Close the run record from its units, its restatements and its data checks; returns the
    summary (status "missing" when the plan task never opened the run). ``unfinished`` names steps
    that did not complete (a crashed restatement or check task leaves no record of its own).
    Waits of the run still open are closed as abandoned (the run is over); a finished run's summary
    carries its ``covers_from`` / ``covers_to`` (ISO dates) for the asset event."""
    empty = {"units_total": 0, "units_failed": 0, "rows_loaded": 0, "failed_units": [], "problems": []}
    with connect(url) as conn, conn.transaction():
        dependencies.abandon_waits(conn, dag_id, run_id)
        found = runs.run_status(conn, dag_id, run_id)
        if found is None:
            return {"status": "missing", **empty}
        run_pk, status = found
        if status == "skipped":
            return {"status": "skipped", **empty}
        waited = dependencies.timed_out_messages(conn, dag_id, run_id)
        if status == "failed" and waited:  # never planned: an upstream did not load in time
            return {**empty, "status": "failed", "problems": waited}
        problems = [f"restatement {line}" for line in restatements.failed_restatements(conn, dag_id, run_id)]
        problems += [f"check {line}" for line in check_results.error_checks(conn, dag_id, run_id)]
        problems += [f"{step} did not complete" for step in unfinished or []]
        closed = runs.finish_run(conn, run_pk, problems=problems)
        # the run metrics count a run once per outcome: a retried record_run finds it closed already
        closed["newly_closed"] = closed["status"] != status
        return {**closed, **dependencies.covers_of(conn, run_pk)}


def record_skipped(pipe: GroupPipeline, *, dag_id: str, run_id: str, url: str, reason: str, interval: Interval) -> None:
    """Record a run that skipped itself (group disabled or source inactive since the DAG was parsed)."""
    with connect(url) as conn, conn.transaction():
        runs.record_skipped(
            conn, group_name=pipe.name, dag_id=dag_id, run_id=run_id, interval_start=interval.start,
            interval_end=interval.end, reason=reason,
        )
