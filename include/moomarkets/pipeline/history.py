"""History mode: one DAG run loads a long range of trading days, in multi-day units.

A history run is a normal manual run of the group's DAG whose ``conf`` is
``{"history": {"from": "2026-01-05", "to": "2026-12-30", ...}}``. Its ``plan_units`` plans the
trading days ``from``..``to`` (both included, the days whose market close falls in the range, as a
backfill of the same dates would) instead of the run's data interval, leaves out the days a
successful unit of the group already loaded (unless ``redo``), and asks the source for at most
``ceil(days / unit_days)`` units, so a year of all-listed bars is a handful of mapped tasks that
run in the source's pool while every request waits on the shared rate limit. Everything else (run
and unit records, upserts, restatements, checks, record_run) is the same as any run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from moomarkets.errors import ConfigError, MooMarketsError
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.pipeline.run import calendar_lookup
from moomarkets.sources.base import Interval, market_dates
from moomarkets.warehouse import history as history_store
from moomarkets.warehouse import runs
from moomarkets.warehouse.db import connect

log = logging.getLogger(__name__)

CONF_KEY = "history"
MAX_UNIT_DAYS = 32  # trading days per unit at most by default (about 130k rows of all-listed bars)
UNIT_DAYS_LIMIT = 366
MAX_RANGE_DAYS = 366 * 40
_FIELDS = {"from", "to", "unit_days", "redo", "batch"}
_BATCH_FIELDS = {"id", "from", "to"}


@dataclass(frozen=True)
class HistorySpec:
    """A checked history request for one run: the trading days ``from_date``..``to_date``."""

    from_date: date
    to_date: date
    unit_days: int | None = None  # None: min(MAX_UNIT_DAYS, days / pool slots)
    redo: bool = False  # also reload days already loaded
    batch: dict[str, str] = field(default_factory=dict)  # the whole request this run is a chunk of

    def to_conf(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.from_date.isoformat(), "to": self.to_date.isoformat()}
        if self.unit_days is not None:
            out["unit_days"] = self.unit_days
        if self.redo:
            out["redo"] = True
        if self.batch:
            out["batch"] = dict(self.batch)
        return {CONF_KEY: out}


def _iso(value: Any, where: str) -> date:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a date as YYYY-MM-DD, got {value!r}", field=where, subject="run conf")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{where} must be a date as YYYY-MM-DD, got {value!r}", field=where,
                          subject="run conf") from None


def parse_conf(conf: Any) -> HistorySpec | None:
    """The history request in a run's ``conf``, or None for an ordinary run. Strict: anything
    malformed under ``history`` raises ConfigError naming the field (the run fails at once)."""
    if not conf or not isinstance(conf, dict) or CONF_KEY not in conf:
        return None
    h = conf[CONF_KEY]
    if not isinstance(h, dict):
        raise ConfigError(f"history must be an object with from and to, got {h!r}", field="history",
                          subject="run conf")
    unknown = set(h) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))} (allowed: "
                          f"{', '.join(sorted(_FIELDS))})", field="history", subject="run conf")
    for key in ("from", "to"):
        if key not in h:
            raise ConfigError(f"history.{key} is required", field=f"history.{key}", subject="run conf")
    start, end = _iso(h["from"], "history.from"), _iso(h["to"], "history.to")
    if start > end:
        raise ConfigError(f"history.to ({end}) is before history.from ({start})", field="history.to",
                          subject="run conf")
    if (end - start).days > MAX_RANGE_DAYS:
        raise ConfigError(f"history range is longer than {MAX_RANGE_DAYS} days", field="history.to",
                          subject="run conf")
    unit_days = h.get("unit_days")
    if unit_days is not None and (
        not isinstance(unit_days, int) or isinstance(unit_days, bool) or not 1 <= unit_days <= UNIT_DAYS_LIMIT
    ):
        raise ConfigError(f"history.unit_days must be an integer from 1 to {UNIT_DAYS_LIMIT}, got {unit_days!r}",
                          field="history.unit_days", subject="run conf")
    redo = h.get("redo", False)
    if not isinstance(redo, bool):
        raise ConfigError(f"history.redo must be true or false, got {redo!r}", field="history.redo",
                          subject="run conf")
    batch = h.get("batch", {})
    if not isinstance(batch, dict) or set(batch) - _BATCH_FIELDS or not all(isinstance(v, str) for v in batch.values()):
        raise ConfigError(f"history.batch must be an object of id, from, to strings, got {batch!r}",
                          field="history.batch", subject="run conf")
    return HistorySpec(start, end, unit_days, redo, dict(batch))


def history_interval(pipe: GroupPipeline, spec: HistorySpec) -> Interval:
    """The interval whose market closes are exactly the days ``from``..``to`` (start inclusive,
    end exclusive), as the source dates a trading day of the group's dataset."""
    market_tz, close = pipe.source_class.trading_day_close(pipe.group.dataset, pipe.group.parameters)
    tz = ZoneInfo(market_tz)
    return Interval(
        datetime.combine(spec.from_date, close, tzinfo=tz),
        datetime.combine(spec.to_date, close, tzinfo=tz) + timedelta(microseconds=1),
    )


def candidate_days(pipe: GroupPipeline, spec: HistorySpec, url: str) -> list[date]:
    """The group's trading days in the range: the warehouse calendar when it covers it, else weekdays."""
    interval = history_interval(pipe, spec)
    tz, close = pipe.source_class.trading_day_close(pipe.group.dataset, pipe.group.parameters)
    days = market_dates(interval, tz, close)
    if not days:
        return []
    known = calendar_lookup(url, pipe.source_code)(days[0], days[-1])
    if known is not None:
        wanted = set(known)
        return [d for d in days if d in wanted]
    return [d for d in days if d.weekday() < 5]


def todo_days(pipe: GroupPipeline, spec: HistorySpec, url: str) -> tuple[list[date], int]:
    """(trading days still to load, days already loaded) in the range."""
    days = candidate_days(pipe, spec, url)
    if spec.redo or not days:
        return days, 0
    with connect(url) as conn:
        done = history_store.loaded_days(conn, pipe.name, days[0], days[-1], codes=pipe.group.parameters.get("tickers"))
    return [d for d in days if d not in done], sum(1 for d in days if d in done)


def unit_days_for(pipe: GroupPipeline, spec: HistorySpec, n_days: int) -> int:
    """Trading days per unit: as asked, else enough units to fill the pool, at most MAX_UNIT_DAYS."""
    if spec.unit_days:
        return spec.unit_days
    slots = pipe.source_class.max_concurrency(pipe.source_row.config)
    return max(1, min(MAX_UNIT_DAYS, -(-n_days // max(1, slots))))


def plan_units(
    pipe: GroupPipeline, spec: HistorySpec, *, dag_id: str, run_id: str, url: str, max_units: int
) -> list[dict[str, Any]]:
    """Plan a history run: the days of the range not loaded yet, in multi-day units; opens the run record."""
    interval = history_interval(pipe, spec)
    todo, done = todo_days(pipe, spec, url)
    units = []
    if todo:
        per_unit = unit_days_for(pipe, spec, len(todo))
        cap = max(1, min(max_units, -(-len(todo) // per_unit)))

        def business_days(start: date, end: date) -> list[date]:
            return [d for d in todo if start <= d <= end]

        units = pipe.source().plan(
            pipe.group.dataset, pipe.group.parameters, interval, max_units=cap, business_days=business_days
        )
        if len(units) > max_units:
            raise MooMarketsError(f"plan produced {len(units)} units, more than max_map_length={max_units}")
    payload = [u.to_dict() for u in units]
    with connect(url) as conn, conn.transaction():
        runs.start_run(
            conn, group_name=pipe.name, dag_id=dag_id, run_id=run_id,
            interval_start=interval.start, interval_end=interval.end, units=payload, covers=pipe.covered_days(interval),
            plan={
                "units": len(payload), "kinds": sorted({u.kind for u in units}),
                "history": {**spec.to_conf()[CONF_KEY], "days": len(todo), "days_already_loaded": done},
            },
        )
    log.info("history %s..%s of %s: %d day(s) to load in %d unit(s), %d already loaded",
             spec.from_date, spec.to_date, pipe.name, len(todo), len(payload), done)
    return payload
