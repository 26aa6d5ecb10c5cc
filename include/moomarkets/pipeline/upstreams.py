"""Group dependencies at run time, as plain functions (the Airflow sensor and trigger wrap them).

A downstream run waits, per upstream group, until a successful upstream run covers each trading day
the downstream run is about to load (``warehouse.dependencies``). The days are worked out exactly
as ``plan_units`` will: the run's data interval, or its history range, through the source's
``covered_days``, keeping the trading days (the warehouse calendar when it has them, else weekdays,
as the planners do), so a weekend-only interval waits for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from moomarkets.config.durations import format_duration, parse_duration
from moomarkets.pipeline import history
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.pipeline.run import calendar_lookup
from moomarkets.sources.base import Interval
from moomarkets.warehouse import dependencies as store
from moomarkets.warehouse.db import connect


@dataclass(frozen=True)
class RunScope:
    """What one downstream run loads: its interval (as plan_units will plan it) and trading days."""

    interval: Interval
    covers: tuple[date, date] | None
    days: list[date]


def run_scope(pipe: GroupPipeline, conf: Any, data_interval: Interval, url: str) -> RunScope:
    """The run's trading days. Raises ConfigError on a malformed history conf (as plan_units does)."""
    wanted = history.parse_conf(conf)
    interval = history.history_interval(pipe, wanted) if wanted is not None else data_interval
    covers = pipe.covered_days(interval)
    if covers is None:
        return RunScope(interval, None, [])
    every = [covers[0] + timedelta(days=i) for i in range((covers[1] - covers[0]).days + 1)]
    known = calendar_lookup(url, pipe.source_code)(covers[0], covers[1])
    days = sorted(set(every) & set(known)) if known is not None else [d for d in every if d.weekday() < 5]
    return RunScope(interval, covers, days)


def timeout_of(pipe: GroupPipeline) -> timedelta:
    return parse_duration(pipe.group.upstream_timeout, field="upstream_timeout", subject=f"job group {pipe.name}")


def waiting_message(upstream: str, day: date, problem: str | None) -> str:
    text = f"waiting for {upstream} to completely load {day.isoformat()}"
    return f"{text} ({problem})" if problem else text


def timed_out_message(upstream: str, day: date, limit: timedelta, problem: str | None = None) -> str:
    text = f"upstream {upstream} did not completely load {day.isoformat()} within {format_duration(limit)}"
    return f"{text} ({problem})" if problem else text


def missing_day(url: str, upstream: str, days: list[date]) -> tuple[date | None, str | None]:
    """(first day ``upstream`` has not completely loaded or None, why it cannot load now or None)."""
    with connect(url) as conn:
        day = store.first_uncovered_day(conn, upstream, days)
        return day, (store.upstream_problem(conn, upstream, day) if day is not None else None)


def begin_wait(pipe: GroupPipeline, *, dag_id: str, run_id: str, upstream: str, day: date, problem: str | None,
               url: str) -> datetime:
    """Record that the run waits for ``upstream`` to load ``day``; returns when the wait began."""
    with connect(url) as conn, conn.transaction():
        return store.start_wait(conn, dag_id=dag_id, run_id=run_id, group_name=pipe.name, upstream=upstream,
                                trading_day=day, message=waiting_message(upstream, day, problem))


def poll(url: str, *, dag_id: str, run_id: str, upstream: str, days: list[date]) -> date | None:
    """One look from the trigger: the first day still missing (None: all loaded), and the wait row
    brought up to date, so the group page shows the day a multi-day run waits for now."""
    day, problem = missing_day(url, upstream, days)
    if day is not None:
        with connect(url) as conn, conn.transaction():
            store.update_wait(conn, dag_id=dag_id, run_id=run_id, upstream=upstream, trading_day=day,
                              message=waiting_message(upstream, day, problem))
    return day


def abandon(*, dag_id: str, run_id: str, upstream: str, reason: str, url: str) -> None:
    """The run will not wait any longer (its group was disabled or its source deactivated meanwhile)."""
    with connect(url) as conn, conn.transaction():
        store.finish_wait(conn, dag_id=dag_id, run_id=run_id, upstream=upstream, status=store.ABANDONED,
                          message=f"no longer waiting: {reason}")


def satisfied(*, dag_id: str, run_id: str, upstream: str, url: str) -> None:
    with connect(url) as conn, conn.transaction():
        store.finish_wait(conn, dag_id=dag_id, run_id=run_id, upstream=upstream, status=store.SATISFIED)


def fail_timed_out(pipe: GroupPipeline, scope: RunScope, *, dag_id: str, run_id: str, upstream: str,
                   url: str) -> str | None:
    """The wait is over: None when the upstream made it after all, else the failure message, with
    the wait marked timed out and a failed run recorded (so record_run and the group status say why)."""
    day, problem = missing_day(url, upstream, scope.days)
    if day is None:
        satisfied(dag_id=dag_id, run_id=run_id, upstream=upstream, url=url)
        return None
    message = timed_out_message(upstream, day, timeout_of(pipe), problem)
    with connect(url) as conn, conn.transaction():
        store.finish_wait(conn, dag_id=dag_id, run_id=run_id, upstream=upstream, status=store.TIMED_OUT,
                          message=message)
        store.record_timed_out_run(
            conn, group_name=pipe.name, dag_id=dag_id, run_id=run_id, interval_start=scope.interval.start,
            interval_end=scope.interval.end, covers=scope.covers, message=message,
        )
    return message
