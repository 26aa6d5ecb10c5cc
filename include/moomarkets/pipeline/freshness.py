"""Is a job group's data fresh? The last trading day it completely loaded against the one it
should have loaded by now (no Airflow).

A group loads trading day D in the run whose data interval contains D's market close (the
source's ``trading_day_close``), and that run starts at the interval's end: the first tick of the
group's cron (in its timezone) after the close. So D is *due* once that tick plus a grace period
has passed (and the tick is after the group was created: its DAG does not catch up). The group is
*late* while any trading day due in the last ``LOOKBACK_DAYS`` is *missing*: no successful run
covers it (``covers_from`` .. ``covers_to``), even when a later day was loaded (a failed Monday
stays missing after a good Tuesday). The Health page shows it; lateness alerts use the same answer,
one per missing day.

Trading days: for J-Quants, the ``trading_calendar`` table when it covers the days looked at, else
Monday to Friday; for Yahoo, the exchange calendars of the group's tickers (a day any of them
trades); the trading calendar dataset itself counts every day (its runs load every calendar day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter

from moomarkets.config.models import GroupSpec
from moomarkets.sources.registry import get_source_class
from moomarkets.warehouse import health, trading_calendar
from moomarkets.warehouse.dependencies import uncovered_days

# How far back to look for due days: longer than any sensible schedule gap (a weekly group plus a
# week of holidays) and short enough for a partial calendar table to cover it.
LOOKBACK_DAYS = 21


@dataclass(frozen=True)
class Freshness:
    group: str
    last_complete: date | None  # latest trading day a successful run covered (capped at today)
    expected: date | None  # latest trading day whose covering run (+ grace) is due by now
    late: bool  # some due day is missing (bool(missing))
    due_at: datetime | None  # when ``expected`` became due: its run's start + grace
    missing: list[date] = field(default_factory=list)  # due days no successful run covers, oldest first
    deadlines: dict[date, datetime] = field(default_factory=dict)  # when each missing day became due


def group_freshness(conn: psycopg.Connection, spec: GroupSpec, *, now: datetime,
                    grace: timedelta = timedelta(0)) -> Freshness:
    """The group's freshness at ``now`` (aware). A group whose source is missing is never late."""
    group = spec.group
    if spec.source is None:
        return Freshness(group.name, None, None, False, None)
    cls = get_source_class(spec.source.kind)
    market_tz, close = cls.trading_day_close(group.dataset, group.parameters)
    today = now.astimezone(ZoneInfo(market_tz)).date()
    last = health.last_complete_day(conn, group.name)
    if last is not None:
        last = min(last, today)  # a calendar run loads the year ahead: only days up to today count
    created = health.group_created_at(conn, group.name)
    due: dict[date, datetime] = {}
    for day in trading_days(conn, spec, today - timedelta(days=LOOKBACK_DAYS), today):
        starts = covering_run_at(group.schedule, group.timezone, day, market_tz, close)
        # a new group's DAG does not catch up: nothing is due from before it existed
        if starts + grace <= now and (created is None or starts >= created):
            due[day] = starts + grace
    missing = uncovered_days(conn, group.name, sorted(due))
    expected = max(due) if due else None
    return Freshness(group.name, last, expected, bool(missing), due.get(expected) if expected else None,
                     missing, {d: due[d] for d in missing})


def covering_run_at(schedule: str, timezone: str, day: date, market_tz: str, close: time) -> datetime:
    """When the run that loads ``day`` starts: the first cron tick strictly after the day's close
    (an interval contains its start, so a close exactly on a tick belongs to the next run)."""
    closes_at = datetime.combine(day, close, tzinfo=ZoneInfo(market_tz)).astimezone(ZoneInfo(timezone))
    return croniter(schedule, closes_at).get_next(datetime)


def trading_days(conn: psycopg.Connection, spec: GroupSpec, start: date, end: date) -> list[date]:
    """The group's trading days in [start, end] (module docstring)."""
    group, source = spec.group, spec.source
    every = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if group.dataset == "trading_calendar":
        return every
    if source is not None and source.kind == "yfinance":
        from moomarkets.sources.yfinance.markets import expected_sessions

        days: set[date] = set()
        for ticker in group.parameters.get("tickers") or []:
            sessions, uncovered, calendar = expected_sessions(ticker, set(every))
            if calendar is None and not uncovered:  # the symbol names no exchange (index, FX): weekdays
                uncovered = {d for d in every if d.weekday() < 5}
            days |= sessions | uncovered
        return sorted(days)
    known = trading_calendar.business_days(conn, source.code, start, end) if source is not None else None
    return known if known is not None else [d for d in every if d.weekday() < 5]
