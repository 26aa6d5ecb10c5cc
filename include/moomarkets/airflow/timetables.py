"""The job groups' timetable: cron data intervals whose backfill range means trading days.

A group's run loads the trading days whose market close falls inside its data interval, and
Airflow names a run by its logical date, the *start* of that interval (``CronDataIntervalTimetable``).
``airflow backfill create --from-date D1 --to-date D2`` bounds logical dates, so with the plain
timetable the run that loads D1 (its interval starts the evening before) was left out and a one-day
range created no run at all.

:class:`TradingDayTimetable` keeps every run exactly as before (same intervals, logical dates and
run ids, so history and dependants are untouched) and changes only how a range is read when runs
are enumerated for a backfill or a catch-up: D1..D2 selects the runs whose interval contains the
market close of a day from D1 to D2. The dates are taken as written (the wall date of the bound
Airflow parsed), so the CLI, the REST API and the UI Backfill form all mean the same days. With a
daily schedule after the close that is exactly the trading days D1..D2; a coarser schedule (weekly)
loads whole intervals, including their days before D1.

Registered by the package's Airflow plugin (``plugins/moomarkets_timetables.py``): the scheduler and
the API server must be able to deserialize it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable
from pendulum import DateTime, instance


class TradingDayTimetable(CronDataIntervalTimetable):
    """``CronDataIntervalTimetable`` plus the market whose close dates a run's trading day."""

    def __init__(self, cron: str, timezone: Any, *, market_timezone: str, market_close: dt.time) -> None:
        super().__init__(cron, timezone)
        self.market_timezone = market_timezone
        self.market_close = market_close

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> TradingDayTimetable:
        base = CronDataIntervalTimetable.deserialize(data)  # Airflow's own parsing of cron and zone
        return cls(
            base.summary,
            base._timezone,
            market_timezone=data["market_timezone"],
            market_close=dt.time.fromisoformat(data["market_close"]),
        )

    def serialize(self) -> dict[str, Any]:
        return {
            **super().serialize(),
            "market_timezone": self.market_timezone,
            "market_close": self.market_close.isoformat(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TradingDayTimetable):
            return NotImplemented
        return (super().__eq__(other) is True and self.market_timezone == other.market_timezone
                and self.market_close == other.market_close)

    def __hash__(self) -> int:
        return hash((self._expression, self._timezone, self.market_timezone, self.market_close))

    # -- trading days -----------------------------------------------------------------------
    def close_of(self, day: dt.date) -> DateTime:
        """The market close of ``day`` as an aware (UTC) moment."""
        return instance(dt.datetime.combine(day, self.market_close, tzinfo=ZoneInfo(self.market_timezone))).in_tz("UTC")

    def interval_containing(self, moment: DateTime) -> DataInterval:
        """The data interval [start, end) that ``moment`` falls in (the sources load the closes in
        [start, end), so a close exactly on a run time belongs to the run that starts then)."""
        start = self._align_to_prev(moment)  # the last run time at or before the moment
        return DataInterval(start=start, end=self._get_next(start))

    def interval_for_day(self, day: dt.date) -> DataInterval:
        """The data interval of the run that loads ``day`` (the one containing its close)."""
        return self.interval_containing(self.close_of(day))

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        # Backfills and catch-up enumerate with catchup=True: read their bounds as trading days.
        # The scheduler's own path for these DAGs (catchup=False) is left exactly as it was.
        if restriction.catchup and (restriction.earliest is not None or restriction.latest is not None):
            restriction = TimeRestriction(
                earliest=self._first_start(restriction.earliest),
                latest=self._last_start(restriction.latest),
                catchup=True,
            )
        return super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )

    def _first_start(self, bound: dt.datetime | None) -> DateTime | None:
        """Logical date (interval start) of the run that loads the bound's wall date."""
        if bound is None:
            return None
        return self.interval_for_day(bound.date()).start

    def _last_start(self, bound: dt.datetime | None) -> DateTime | None:
        """Like :meth:`_first_start` for the range's end, except when the end is a weekend: the run
        holding a Sunday's close loads Monday, after the range, so the run before it is the last."""
        if bound is None:
            return None
        last = bound.date()
        interval = self.interval_for_day(last)
        day = last
        while self.close_of(day) >= interval.start:  # the days whose close this run holds, up to `last`
            if day.weekday() < 5:
                return interval.start
            day -= dt.timedelta(days=1)
        return self._get_prev(interval.start)
