"""Read queries behind the CLI's listings and the UI: sources, groups, runs and coverage.

Plain functions over a psycopg connection (dict rows); every value reaches SQL as a parameter,
table names come from the fixed dataset registry and are quoted with ``psycopg.sql``. Nothing
here reads a secret: sources carry only the *name* of their Airflow Connection. What only Airflow
knows (pool names, schedules in words, DAG state) is added by ``moomarkets.services.views``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from moomarkets.config.models import DataSource, JobGroup
from moomarkets.config.validate import next_runs
from moomarkets.sources.registry import get_source_class, source_kinds
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.datasets import DATASETS

MAX_COVERAGE_DAYS = 731
MAX_COVERAGE_CODES = 60


def _kind_info(src: DataSource) -> dict[str, Any]:
    try:
        cls = get_source_class(src.kind)
        return {"rate_limit": cls.rate_limit(src.config), "slots": cls.max_concurrency(src.config),
                "datasets": list(cls.datasets)}
    except Exception:  # noqa: BLE001 - an unknown kind must not break the list
        return {"rate_limit": [], "slots": None, "datasets": []}


def source_last_errors(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Each source's most recent error: a failed or partial run of any of its groups, or, while a
    run is still going, a unit of it that already failed (its ``unit_key`` is then set)."""
    rows = conn.execute(
        """
        WITH errors AS (
            SELECT r.group_name, r.run_id, r.status, r.error, NULL::text AS unit_key,
                   coalesce(r.finished_at, r.started_at) AS at, r.id AS run_pk
              FROM runs r
             WHERE r.status IN ('failed', 'partial') AND r.error IS NOT NULL
            UNION ALL
            SELECT r.group_name, r.run_id, u.status, u.unit_key || ': ' || u.error, u.unit_key,
                   coalesce(u.finished_at, u.started_at, r.started_at), r.id
              FROM run_units u
              JOIN runs r ON r.id = u.run_pk
             WHERE r.status = 'running' AND u.status = 'failed' AND u.error IS NOT NULL
        )
        SELECT DISTINCT ON (s.code) s.code, e.group_name, e.run_id, e.status, e.error, e.unit_key, e.at
          FROM errors e
          JOIN job_groups g ON g.name = e.group_name
          JOIN data_sources s ON s.id = g.data_source_id
         ORDER BY s.code, e.at DESC, e.run_pk DESC
        """
    ).fetchall()
    return {r["code"]: dict(r) for r in rows}


def source_row(src: DataSource, last_error: dict[str, Any] | None, group_names: list[str]) -> dict[str, Any]:
    """A source with its kind's rate limit, slots and datasets, its groups and its last error."""
    info = _kind_info(src)
    return {
        **src.to_dict(),
        "rate_limit": info["rate_limit"],
        "pool_slots": info["slots"],
        "datasets": info["datasets"],
        "groups": group_names,
        "last_error": last_error,
    }


def list_sources(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every source, by code (see ``source_row``)."""
    errors = source_last_errors(conn)
    groups: dict[str, list[str]] = {}
    for g in store.list_groups(conn):
        groups.setdefault(g.data_source, []).append(g.name)
    return [source_row(s, errors.get(s.code), groups.get(s.code, [])) for s in store.list_sources(conn)]


def get_source(conn: psycopg.Connection, code: str) -> dict[str, Any]:
    """One source (see ``source_row``); NotFoundError when there is none."""
    src = store.get_source(conn, code)
    groups = [g.name for g in store.list_groups(conn) if g.data_source == code]
    return source_row(src, source_last_errors(conn).get(code), groups)


def kinds() -> list[dict[str, Any]]:
    """Source kinds with their datasets and defaults (for forms)."""
    out = []
    for kind in source_kinds():
        cls = get_source_class(kind)
        out.append({
            "kind": kind,
            "datasets": list(cls.datasets),
            "default_conn_id": cls.default_conn_id,
            "default_rate_limit": cls.rate_limit({}),
            "default_max_concurrency": cls.max_concurrency({}),
        })
    return out


# -- groups ---------------------------------------------------------------------------------
_STATUS_COLS = ("last_run_status", "last_run_id", "last_run_started_at", "last_run_finished_at", "units_total",
                "units_done", "units_failed", "rows_loaded", "last_error")


def next_run(schedule: str, timezone: str) -> datetime | None:
    """The group's next run time; None for a schedule that no longer parses (a hand-edited row)."""
    try:
        return next_runs(schedule, timezone, count=1)[0]
    except Exception:  # noqa: BLE001 - a list must not break on one bad row
        return None


def group_row(g: JobGroup, status: dict[str, Any] | None) -> dict[str, Any]:
    """A group with its next run and the status of its last run (``job_group_status``)."""
    st = status or {}
    return {
        **g.to_dict(),
        "next_run": next_run(g.schedule, g.timezone),
        **{c: st.get(c) for c in _STATUS_COLS},
    }


def list_groups(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every group, by name, with its last run's status and progress."""
    status = {r["name"]: r for r in conn.execute("SELECT * FROM job_group_status")}
    return [group_row(g, status.get(g.name)) for g in store.list_groups(conn)]


def get_group(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """One group (see ``group_row``); NotFoundError when there is none."""
    g = store.get_group(conn, name)
    status = conn.execute("SELECT * FROM job_group_status WHERE name = %s", (name,)).fetchone()
    return group_row(g, status)


def group_runs(conn: psycopg.Connection, name: str, limit: int = 15, units_per_run: int = 200) -> list[dict[str, Any]]:
    """Recent runs of a group, newest first, each with its units (status, rows, duration, error)."""
    runs = conn.execute(
        """
        SELECT id, run_id, status, data_interval_start, data_interval_end, units_total, units_done,
               units_failed, rows_loaded, error, started_at, finished_at,
               extract(epoch FROM coalesce(finished_at, now()) - started_at) AS seconds
          FROM runs WHERE group_name = %s ORDER BY started_at DESC, id DESC LIMIT %s
        """,
        (name, limit),
    ).fetchall()
    if not runs:
        return []
    units = conn.execute(
        """
        SELECT run_pk, unit_key, status, rows, requests, attempts, error, started_at, finished_at,
               extract(epoch FROM coalesce(finished_at, CASE WHEN status = 'running' THEN now() END)
                                  - started_at) AS seconds
          FROM (SELECT u.*, row_number() OVER (PARTITION BY run_pk ORDER BY unit_key) AS n
                  FROM run_units u WHERE run_pk = ANY(%s)) x
         WHERE n <= %s ORDER BY run_pk, unit_key
        """,
        ([r["id"] for r in runs], units_per_run),
    ).fetchall()
    by_run: dict[int, list[dict[str, Any]]] = {}
    for u in units:
        by_run.setdefault(u["run_pk"], []).append(dict(u))
    out = []
    for r in runs:
        item = dict(r)
        item["units"] = by_run.get(r["id"], [])
        item["seconds"] = float(r["seconds"]) if r["seconds"] is not None else None
        for u in item["units"]:
            u["seconds"] = float(u["seconds"]) if u["seconds"] is not None else None
        out.append(item)
    return out


# -- coverage -------------------------------------------------------------------------------
def date_column(dataset: str) -> str:
    """The column a dataset's rows are dated by (statements by disclosure, the rest by trading day)."""
    ds = DATASETS[dataset]
    return "disclosed_date" if "disclosed_date" in ds.columns else "date"


def coverage_options(conn: psycopg.Connection) -> list[dict[str, str]]:
    """The (dataset, source) pairs of the job groups, sorted: what the coverage page offers."""
    pairs = {(g.dataset, g.data_source) for g in store.list_groups(conn)}
    return [{"dataset": d, "source": s} for d, s in sorted(pairs)]


def default_range(conn: psycopg.Connection, dataset: str, source: str, end: date | None = None) -> tuple[date, date]:
    """From the first loaded day (at most a year back) to ``end`` (today); 90 days when nothing is loaded."""
    end = end or date.today()
    if dataset not in DATASETS:
        return end - timedelta(days=90), end
    row = conn.execute(
        sql.SQL("SELECT min({d}) AS first FROM {t} WHERE source = %s AND {d} BETWEEN %s AND %s").format(
            d=sql.Identifier(date_column(dataset)), t=sql.Identifier(DATASETS[dataset].table)
        ),
        (source, end - timedelta(days=365), end),
    ).fetchone()
    return (row["first"] if row and row["first"] else end - timedelta(days=90)), end


def coverage(
    conn: psycopg.Connection,
    dataset: str,
    source: str,
    start: date,
    end: date,
    codes: list[str] | None = None,
) -> dict[str, Any]:
    """Rows per day against the trading calendar, and an issues x days matrix, for one dataset.

    A business day is one the source's ``trading_calendar`` says trades (HolDiv 1 or 2); without
    calendar rows, Monday to Friday. A business day with no rows is a gap; a day with fewer rows
    than the median of the business days is "low".
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}")
    if end < start:
        raise ValueError("the end date is before the start date")
    if (end - start).days + 1 > MAX_COVERAGE_DAYS:
        raise ValueError(f"choose at most {MAX_COVERAGE_DAYS} days")
    table = sql.Identifier(DATASETS[dataset].table)
    dcol = sql.Identifier(date_column(dataset))
    has_code = "code" in DATASETS[dataset].columns
    counts = {
        r["d"]: r["n"]
        for r in conn.execute(
            sql.SQL("SELECT {d} AS d, count(*) AS n FROM {t} WHERE source = %s AND {d} BETWEEN %s AND %s GROUP BY 1").format(
                d=dcol, t=table
            ),
            (source, start, end),
        )
    }
    cal = {
        r["date"]: r["hol_div"]
        for r in conn.execute(
            "SELECT date, hol_div FROM trading_calendar WHERE source = %s AND date BETWEEN %s AND %s",
            (source, start, end),
        )
    }
    days = []
    d = start
    while d <= end:
        if d in cal:
            business, basis = cal[d] in (1, 2), "calendar"
        else:
            business, basis = d.weekday() < 5, "weekday"
        days.append({"date": d, "rows": int(counts.get(d, 0)), "business": business, "basis": basis})
        d += timedelta(days=1)
    business_counts = sorted(x["rows"] for x in days if x["business"] and x["rows"])
    typical = business_counts[len(business_counts) // 2] if business_counts else 0
    for x in days:
        if not x["business"]:
            x["state"] = "closed" if not x["rows"] else "extra"
        elif not x["rows"]:
            # today's session may not have closed (or been loaded) yet: not a gap
            x["state"] = "gap" if x["date"] < date.today() else "future"
        elif typical and x["rows"] < 0.9 * typical:
            x["state"] = "low"
        else:
            x["state"] = "ok"
    result: dict[str, Any] = {
        "dataset": dataset,
        "source": source,
        "start": start,
        "end": end,
        "days": days,
        "typical_rows": typical,
        "calendar_days": len(cal),
        "gaps": [x["date"] for x in days if x["state"] == "gap"],
        "low": [x["date"] for x in days if x["state"] == "low"],
        "rows_total": sum(x["rows"] for x in days),
        "matrix": None,
    }
    if has_code:
        result["matrix"] = _issue_matrix(conn, table, dcol, source, start, end, days, codes)
    return result


def _issue_matrix(
    conn: psycopg.Connection,
    table: sql.Identifier,
    dcol: sql.Identifier,
    source: str,
    start: date,
    end: date,
    days: list[dict[str, Any]],
    codes: list[str] | None,
) -> dict[str, Any]:
    """Issues x business days: which issue has a row on which day (the first N issues, or ``codes``)."""
    if codes:
        chosen = list(dict.fromkeys(c.strip() for c in codes if c.strip()))[:MAX_COVERAGE_CODES]
        truncated = len(codes) > MAX_COVERAGE_CODES
    else:
        found = conn.execute(
            sql.SQL("SELECT DISTINCT code FROM {t} WHERE source = %s AND {d} BETWEEN %s AND %s ORDER BY code LIMIT %s").format(
                t=table, d=dcol
            ),
            (source, start, end, MAX_COVERAGE_CODES + 1),
        ).fetchall()
        chosen = [r["code"] for r in found][:MAX_COVERAGE_CODES]
        truncated = len(found) > MAX_COVERAGE_CODES
    business = [x["date"] for x in days if x["business"]][-90:]  # keep the picture readable
    present: set[tuple[str, date]] = set()
    if chosen and business:
        for r in conn.execute(
            sql.SQL("SELECT code, {d} AS d FROM {t} WHERE source = %s AND code = ANY(%s) AND {d} = ANY(%s)").format(
                t=table, d=dcol
            ),
            (source, chosen, business),
        ):
            present.add((r["code"], r["d"]))
    return {
        "codes": chosen,
        "dates": business,
        "truncated": truncated,
        "cells": [[(c, d) in present for d in business] for c in chosen],
        "missing": sum(1 for c in chosen for d in business if (c, d) not in present and d < date.today()),
    }


def dataset_totals(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Rows and the sources they came from, per dataset (registry order): a quick load summary."""
    out = []
    for name, ds in DATASETS.items():
        row = conn.execute(
            sql.SQL("SELECT count(*) AS n, array_agg(DISTINCT source) FILTER (WHERE source IS NOT NULL) AS sources"
                    " FROM {}").format(sql.Identifier(ds.table))
        ).fetchone()
        out.append({"dataset": name, "rows": int(row["n"]), "sources": sorted(row["sources"] or [])})
    return out
