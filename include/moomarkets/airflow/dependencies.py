"""Group dependencies in Airflow: ``wait_for_<upstream>`` tasks and the trigger they defer to.

Why a subclass of ``ExternalTaskSensor`` that checks the warehouse:

- Being an ``ExternalTaskSensor`` (``external_dag_id`` = the upstream group's DAG) is what makes
  Airflow's serializer record a DAG dependency edge (it checks ``isinstance``), so the "DAG
  Dependencies" view and the sensor's link show upstream -> downstream.
- The stock sensor matches the upstream run by exact logical date. Our groups have different
  schedules (calendar at 07:00 every day, bars at 19:00 on weekdays), and a day loaded by a
  backfill, a manual or a history run is just as loaded. So the check is the warehouse's: a
  *successful* upstream run whose ``covers_from .. covers_to`` contains each trading day this run
  will load (``pipeline.upstreams``).
- It never holds a worker slot while it waits: ``execute`` checks once and, if a day is missing,
  records the wait and defers to :class:`UpstreamLoadedTrigger`, which polls the warehouse in the
  triggerer (asynchronously) until the days are covered or the group's ``upstream_timeout``
  (counted from when the wait began) runs out; then the run fails naming the upstream and the day.
  It runs in the default pool, never the source's: waiting must not take a fetch slot.
- A disabled group (or inactive source) does not wait: the sensor returns at once and
  ``plan_units`` records the skip as before; a group disabled while its run waits stops waiting
  (the trigger checks it on every poll) and skips too, never fails.
- A warehouse that blinks (connection refused, Connection lookup failing) does not kill the
  trigger: it logs one line and polls again until the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from moomarkets import settings
from moomarkets.errors import ConfigError, WarehouseConnectionError
from moomarkets.pipeline import run as runner
from moomarkets.pipeline import upstreams
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.sources.base import Interval

POLL_SECONDS = 30.0
LOADED, TIMED_OUT, NOT_RUNNABLE = "loaded", "timed_out", "not_runnable"
# what a blinking warehouse raises: the trigger logs it and polls again (anything else fails the task)
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, WarehouseConnectionError)


def task_id_for(upstream: str) -> str:
    return f"wait_for_{upstream}"


class UpstreamLoadedSensor(ExternalTaskSensor):
    """Wait (deferred) until the upstream group has completely loaded this run's trading days."""

    ui_color = "#f0e4c4"

    def __init__(self, *, pipe: GroupPipeline, upstream: str, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", POLL_SECONDS)  # the trigger's poll interval
        super().__init__(
            task_id=task_id_for(upstream), external_dag_id=upstream, deferrable=True, check_existence=False,
            retries=2, retry_delay=timedelta(seconds=30), execution_timeout=timedelta(minutes=10),
            doc_md=(f"Waits until job group `{upstream}` has completely loaded (a successful run) every trading "
                    f"day this run loads; fails after `{pipe.group.upstream_timeout}`."),
            **kwargs,
        )
        self.pipe = pipe
        self.upstream = upstream

    def _scope(self, context: Any, url: str) -> upstreams.RunScope:
        interval = Interval(context["data_interval_start"], context["data_interval_end"])
        try:
            return upstreams.run_scope(self.pipe, context["dag_run"].conf, interval, url)
        except ConfigError as exc:  # a malformed history conf: fail now, as plan_units would
            raise AirflowFailException(str(exc)) from None

    def _not_runnable(self, url: str) -> str | None:
        """Why this run must not wait (group disabled, source inactive, group gone), else None."""
        ok, reason = runner.group_is_runnable(url, self.pipe.name)
        return None if ok else reason

    def execute(self, context: Any) -> None:
        url = settings.database_url()
        if (reason := self._not_runnable(url)) is not None:  # plan_units records the skip
            self.log.info("not waiting for %s: %s", self.upstream, reason)
            return
        scope = self._scope(context, url)
        ids = {"dag_id": self.dag_id, "run_id": context["run_id"], "upstream": self.upstream}
        day, problem = upstreams.missing_day(url, self.upstream, scope.days)
        if day is None:
            upstreams.satisfied(**ids, url=url)  # closes the wait of an earlier try, if any
            self.log.info("%s has completely loaded %d trading day(s) of this run", self.upstream, len(scope.days))
            return
        since = upstreams.begin_wait(self.pipe, **ids, day=day, problem=problem, url=url)
        deadline = since + upstreams.timeout_of(self.pipe)
        self.log.info("%s; deferring until %s", upstreams.waiting_message(self.upstream, day, problem),
                      deadline.isoformat())
        self.defer(
            trigger=UpstreamLoadedTrigger(
                **ids, days=[d.isoformat() for d in scope.days], deadline=deadline.isoformat(),
                poll_seconds=float(self.poke_interval), group=self.pipe.name,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        url = settings.database_url()
        ids = {"dag_id": self.dag_id, "run_id": context["run_id"], "upstream": self.upstream}
        if event.get("status") == LOADED:
            upstreams.satisfied(**ids, url=url)
            self.log.info("%s has completely loaded this run's trading days", self.upstream)
            return
        if (reason := self._not_runnable(url)) is not None:  # disabled while waiting: skip, never fail
            upstreams.abandon(**ids, reason=reason, url=url)
            self.log.info("no longer waiting for %s: %s", self.upstream, reason)
            return
        if event.get("status") == NOT_RUNNABLE:  # enabled again since the trigger looked: wait on
            self.execute(context)  # (a wait still open keeps its start, so not its limit either)
            return
        message = upstreams.fail_timed_out(self.pipe, self._scope(context, url), **ids, url=url)
        if message is not None:
            raise AirflowFailException(message)


class UpstreamLoadedTrigger(BaseTrigger):
    """Polls the warehouse (in a thread: psycopg is blocking) until ``upstream`` covers ``days``
    or ``deadline`` passes; one event either way. Its kwargs are plain JSON (dates as ISO
    strings), never the warehouse URL: the triggerer resolves the Connection itself. With
    ``group`` (the waiting group), a poll that finds it disabled or its source inactive ends the
    wait at once (``not_runnable``). A transient warehouse error is logged and polled again."""

    def __init__(self, *, dag_id: str, run_id: str, upstream: str, days: list[str], deadline: str,
                 poll_seconds: float = POLL_SECONDS, group: str | None = None) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.upstream, self.group = dag_id, run_id, upstream, group
        self.days, self.deadline, self.poll_seconds = list(days), deadline, float(poll_seconds)
        self._url: str | None = None  # resolved on the first poll, again after a warehouse error

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "dag_id": self.dag_id, "run_id": self.run_id, "upstream": self.upstream, "days": self.days,
            "deadline": self.deadline, "poll_seconds": self.poll_seconds, "group": self.group,
        })

    def _poll(self, days: list[date]) -> tuple[str, date | None, str]:
        """One look (blocking, run in a thread): (status, first missing day, why not runnable)."""
        url = self._url = self._url or settings.database_url()
        if self.group is not None:
            ok, reason = runner.group_is_runnable(url, self.group)
            if not ok:
                return NOT_RUNNABLE, None, reason
        missing = upstreams.poll(url, dag_id=self.dag_id, run_id=self.run_id, upstream=self.upstream, days=days)
        return (LOADED if missing is None else "waiting"), missing, ""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from moomarkets.airflow.warehouse import install

        install()  # the triggerer finds the warehouse Connection like a task does
        days = [date.fromisoformat(d) for d in self.days]
        deadline = datetime.fromisoformat(self.deadline)
        reported = missing = None
        while True:
            try:
                status, found, reason = await asyncio.to_thread(self._poll, days)
            except TRANSIENT as exc:  # the warehouse blinked: say so in one line, keep polling
                self._url = None  # the Connection may have changed meanwhile
                # the type and SQLSTATE only: a driver message may name the host, never its password
                code = getattr(exc, "sqlstate", None)
                self.log.warning("warehouse not reachable while waiting for %s (%s%s); polling again",
                                 self.upstream, type(exc).__name__, f" {code}" if code else "")
            else:
                if status == LOADED:
                    yield TriggerEvent({"status": LOADED, "upstream": self.upstream})
                    return
                if status == NOT_RUNNABLE:
                    yield TriggerEvent({"status": NOT_RUNNABLE, "upstream": self.upstream, "reason": reason})
                    return
                missing = found
            left = (deadline - datetime.now(timezone.utc)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"status": TIMED_OUT, "upstream": self.upstream,
                                    "day": missing.isoformat() if missing else None})
                return
            if missing is not None and missing != reported:  # once per day waited for, not every poll
                self.log.info("waiting for %s to completely load %s (until %s)", self.upstream, missing, self.deadline)
                reported = missing
            await asyncio.sleep(min(self.poll_seconds, left))


def add_upstream_sensors(pipe: GroupPipeline) -> list[UpstreamLoadedSensor]:
    """One sensor per upstream group (in the DAG being built); they all run before ``plan_units``."""
    return [UpstreamLoadedSensor(pipe=pipe, upstream=up) for up in pipe.group.depends_on]
