"""Airflow's side of the service layer: pause state, manual runs, backfills, pool usage, schedules
in words and credential checks.

Each call uses Airflow's own functions against its metadata DB, so it works wherever Airflow is
configured (the api-server hosting the UI, or a shell running the CLI). Airflow is imported inside
the functions: importing this module costs nothing. Input rules (backfill limits, date order) are
checked by ``moomarkets.services.runs`` before these are called; the config tables are the source
of truth and these calls only keep Airflow in step with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import timezone as dt_timezone
from typing import Any

from moomarkets.config.models import DataSource
from moomarkets.errors import AirflowOpError


# -- DAG state ------------------------------------------------------------------------------
@dataclass
class DagState:
    """What Airflow knows about one group's DAG. ``exists`` is False until the DAG is parsed."""

    dag_id: str
    exists: bool = False
    is_paused: bool | None = None
    is_stale: bool | None = None
    has_import_errors: bool | None = None
    next_run_after: datetime | None = None
    timetable_description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "exists": self.exists,
            "is_paused": self.is_paused,
            "is_stale": self.is_stale,
            "has_import_errors": self.has_import_errors,
            "next_run_after": self.next_run_after.isoformat() if self.next_run_after else None,
            "timetable_description": self.timetable_description,
        }


def dag_states(dag_ids: Iterable[str]) -> dict[str, DagState]:
    """One DagState per id (``exists=False`` for DAGs Airflow has not parsed)."""
    from sqlalchemy import select

    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    ids = sorted(set(dag_ids))
    out = {i: DagState(dag_id=i) for i in ids}
    if not ids:
        return out
    with create_session() as session:
        for dm in session.scalars(select(DagModel).where(DagModel.dag_id.in_(ids))):
            out[dm.dag_id] = DagState(
                dag_id=dm.dag_id,
                exists=True,
                is_paused=bool(dm.is_paused),
                is_stale=bool(dm.is_stale),
                has_import_errors=bool(dm.has_import_errors),
                next_run_after=dm.next_dagrun_create_after,
                timetable_description=dm.timetable_description,
            )
    return out


def set_paused(dag_id: str, paused: bool) -> bool:
    """Pause or unpause a DAG, as Airflow's own toggle does; False when the DAG is not parsed yet.

    A group's DAG is created paused or not from ``is_enabled`` (``is_paused_upon_creation``), so
    a DAG that does not exist yet will start in the right state anyway.
    """
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dm = session.get(DagModel, dag_id)
        if dm is None:
            return False
        dm.is_paused = paused
    return True


def describe_schedule(schedule: str, timezone: str) -> str:
    """The cron schedule as Airflow words it (its own timetable class), with the timezone."""
    try:
        from airflow.timetables.interval import CronDataIntervalTimetable

        text = CronDataIntervalTimetable(schedule, timezone=timezone).description
    except Exception:  # noqa: BLE001 - a page must stay up: fall back to the raw expression
        text = schedule
    return f"{text} ({timezone})"


# -- runs -----------------------------------------------------------------------------------
def trigger(
    dag_id: str,
    *,
    run_id: str | None = None,
    conf: dict[str, Any] | None = None,
    logical_date: datetime | None,
    run_after: datetime,
    user_name: str | None = None,
    note: str | None = None,
    from_ui: bool = True,
    exists_message: str,
) -> str:
    """Queue a manual run with Airflow's own ``trigger_dag`` (what "Trigger" does); returns its run id.

    Every refusal becomes one AirflowOpError line; ``exists_message`` is the one for a run that
    already exists (a double click, a history chunk queued before).
    """
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    try:
        run = trigger_dag(
            dag_id,
            run_id=run_id,
            conf=conf,
            triggered_by=DagRunTriggeredByType.UI if from_ui else DagRunTriggeredByType.CLI,
            triggering_user_name=user_name,
            logical_date=logical_date,
            run_after=run_after,
            note=note,
        )
    except DagNotFound:
        raise AirflowOpError(f"DAG {dag_id} is not parsed yet; try again in a minute") from None
    except DagRunAlreadyExists:
        raise AirflowOpError(exists_message) from None
    except ValueError as exc:
        raise AirflowOpError(str(exc)) from None
    if run is None:
        raise AirflowOpError(f"Airflow did not create a run for {dag_id}")
    return run.run_id


def trigger_run(dag_id: str, *, user_name: str | None = None, note: str | None = None, from_ui: bool = True) -> str:
    """Queue a manual run for the latest complete data interval; returns its run id."""
    now = datetime.now(dt_timezone.utc).replace(microsecond=0)
    # a logical date makes Airflow infer the data interval: the last complete one
    return trigger(dag_id, logical_date=now, run_after=now, user_name=user_name, note=note, from_ui=from_ui,
                   exists_message=f"a run of {dag_id} was just triggered; try again in a second")


@dataclass
class BackfillPlan:
    """Runs a backfill would create: data intervals whose run time falls in the requested dates."""

    dag_id: str
    from_logical: datetime | None
    to_logical: datetime | None
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    backfill_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "backfill_id": self.backfill_id,
            "runs": len(self.intervals),
            "from_logical_date": self.from_logical.isoformat() if self.from_logical else None,
            "to_logical_date": self.to_logical.isoformat() if self.to_logical else None,
            "intervals": [{"start": s.isoformat(), "end": e.isoformat()} for s, e in self.intervals],
        }


def _day_bound(day: date) -> datetime:
    """A date as ``airflow backfill create`` reads ``--from-date``/``--to-date``: midnight UTC."""
    return datetime.combine(day, datetime.min.time(), tzinfo=dt_timezone.utc)


def plan_backfill(dag_id: str, from_date: date, to_date: date) -> BackfillPlan:
    """The runs a backfill of the trading days ``from_date``..``to_date`` creates.

    The same enumeration Airflow's own backfill does with the same two dates (so the UI, the
    ``moomarkets`` CLI and ``airflow backfill create`` agree): the group's ``TradingDayTimetable``
    reads them as trading days, and only runs whose data interval has ended are created.
    """
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        serdag = session.scalar(SerializedDagModel.latest_item_select_object(dag_id))
        if serdag is None:
            raise AirflowOpError(f"DAG {dag_id} is not parsed yet; try again in a minute")
        dag = serdag.dag
    if not dag.timetable.periodic:
        raise AirflowOpError(f"DAG {dag_id} has no schedule (a misconfigured group?) and cannot be backfilled")
    now = datetime.now(dt_timezone.utc)
    intervals = [
        (info.data_interval.start, info.data_interval.end)
        for info in dag.iter_dagrun_infos_between(_day_bound(from_date), _day_bound(to_date))
        if info.data_interval is not None and info.data_interval.end < now
    ]
    return BackfillPlan(
        dag_id=dag_id,
        from_logical=intervals[0][0] if intervals else None,
        to_logical=intervals[-1][0] if intervals else None,
        intervals=intervals,
    )


def create_backfill(
    dag_id: str,
    from_date: date,
    to_date: date,
    *,
    reprocess_behavior: str = "none",
    max_active_runs: int = 1,
    user_name: str | None = None,
    dry_run: bool = False,
) -> BackfillPlan:
    """Create an Airflow backfill that loads the trading days ``from_date``..``to_date`` (see plan_backfill).

    Uses Airflow's own ``_create_backfill`` (what ``airflow backfill create`` and the REST API call):
    it only inserts queued runs; the scheduler runs them, and not while the DAG is paused.
    ``reprocess_behavior``: ``none`` skips intervals that already ran, ``failed`` redoes failed
    ones, ``completed`` redoes all. The values were checked by ``services.runs.backfill_request``.
    """
    from airflow.exceptions import DagNotFound
    from airflow.models.backfill import (
        AlreadyRunningBackfill,
        DagNonPeriodicScheduleException,
        InvalidBackfillDate,
        InvalidBackfillDateRange,
        NoBackfillRunsToCreate,
        ReprocessBehavior,
        _create_backfill,
    )

    behavior = ReprocessBehavior(reprocess_behavior)  # a bad value is the caller's bug: ValueError
    plan = plan_backfill(dag_id, from_date, to_date)
    if not plan.intervals:
        raise AirflowOpError(f"no completed runs of {dag_id} load trading days from {from_date} to {to_date}")
    if dry_run:
        return plan
    try:
        backfill = _create_backfill(
            dag_id=dag_id,
            from_date=_day_bound(from_date),  # the same bounds as `airflow backfill create`
            to_date=_day_bound(to_date),
            max_active_runs=int(max_active_runs),
            reverse=False,
            dag_run_conf=None,
            triggering_user_name=user_name,
            reprocess_behavior=behavior,
            run_on_latest_version=True,
        )
    except AlreadyRunningBackfill:
        raise AirflowOpError(f"a backfill of {dag_id} is already running; wait for it or cancel it in Airflow") from None
    except (DagNotFound, DagNonPeriodicScheduleException, InvalidBackfillDate, InvalidBackfillDateRange,
            NoBackfillRunsToCreate) as exc:
        raise AirflowOpError(str(exc)) from None
    plan.backfill_id = backfill.id
    return plan


# -- pools ----------------------------------------------------------------------------------
@dataclass
class PoolUsage:
    """Slots and current use of one pool; ``exists`` is False until the pool is created."""

    name: str
    exists: bool
    slots: int | None = None
    running: int = 0
    queued: int = 0
    open: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pool_usage(names: Iterable[str]) -> dict[str, PoolUsage]:
    """Slots and current use of the named pools (``exists=False`` for a pool not created yet)."""
    from airflow.models.pool import Pool

    stats = Pool.slots_stats()
    out = {}
    for name in names:
        s = stats.get(name)
        if s is None:
            out[name] = PoolUsage(name=name, exists=False)
            continue
        total, free = s["total"], s["open"]
        out[name] = PoolUsage(
            name=name,
            exists=True,
            slots=None if total == float("inf") else int(total),
            running=int(s["running"]),
            queued=int(s["queued"]),
            open=None if free == float("inf") else int(free),
        )
    return out


# -- credentials ----------------------------------------------------------------------------
@dataclass
class CredentialCheck:
    """Result of one ``validate_credentials`` call. ``ok`` is None when it could not be decided."""

    ok: bool | None
    message: str
    checked_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "checked_at": datetime.fromtimestamp(self.checked_at).astimezone().isoformat(timespec="seconds"),
        }


_CHECKS: dict[tuple, CredentialCheck] = {}
_CHECKS_LOCK = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="moomarkets-credcheck")


def _check_now(src: DataSource) -> CredentialCheck:
    from moomarkets import settings
    from moomarkets.airflow.connections import connection_exists, describe_check, get_credentials
    from moomarkets.pipeline.credentials import check_source_credentials

    exists = connection_exists(src.conn_id)
    missing = f"Airflow connection {src.conn_id!r} does not exist" if exists is False else None
    try:
        creds = get_credentials(src.conn_id)
    except Exception as exc:  # noqa: BLE001
        return CredentialCheck(None, f"could not read Airflow connection {src.conn_id!r} ({type(exc).__name__})")
    outcome = check_source_credentials(src.kind, src.code, src.config, creds, db_url=settings.database_url())
    return CredentialCheck(outcome.ok, describe_check(outcome, source_code=src.code, conn_missing=missing))


def check_credentials(src: DataSource, *, timeout: float = 10.0, max_age: float = 300.0, force: bool = False) -> CredentialCheck:
    """Validate a source's credentials with one cheap API call; cached ``max_age`` seconds per process.

    The secret is read from the Airflow Connection here and never leaves this function: the
    message is scrubbed of it.
    """
    key = (src.code, src.kind, src.conn_id, repr(sorted(src.config.items(), key=str)))
    with _CHECKS_LOCK:
        cached = _CHECKS.get(key)
    if cached and not force and time.time() - cached.checked_at < max_age:
        return cached
    future = _POOL.submit(_check_now, src)
    try:
        result = future.result(timeout=timeout)
    except FutureTimeout:
        result = CredentialCheck(None, f"no answer from the API within {timeout:.0f} s")
    with _CHECKS_LOCK:
        _CHECKS[key] = result
    return result


def clear_credential_cache() -> None:
    """Forget every cached check (the next one asks the API again)."""
    with _CHECKS_LOCK:
        _CHECKS.clear()
