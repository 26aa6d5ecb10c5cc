"""Manual runs and backfills of a job group, and the limits a backfill request must keep.

The limits live here only: the page's form, the API's request model and ``backfill`` all use
them (Airflow's own functions in ``moomarkets.airflow.ops`` trust what they are given).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal, get_args

import psycopg

from moomarkets.airflow import ops
from moomarkets.airflow.ops import BackfillPlan
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError
from moomarkets.warehouse import config_store as store

ReprocessBehavior = Literal["none", "failed", "completed"]
REPROCESS_BEHAVIORS: tuple[str, ...] = get_args(ReprocessBehavior)
# what the page calls each behavior (Airflow: skip intervals that ran, redo failed ones, redo all)
REPROCESS_LABELS = {"none": "skip", "failed": "redo failed", "completed": "redo all"}
MIN_ACTIVE_RUNS, MAX_ACTIVE_RUNS = 1, 32

_PAUSED = "The group is disabled: its DAG is paused, so the {what} until you enable it."


@dataclass(frozen=True)
class BackfillRequest:
    """A checked backfill request: the days whose scheduled runs to create, and how."""

    from_date: date
    to_date: date
    reprocess_behavior: ReprocessBehavior = "none"
    max_active_runs: int = 1


def _date(value: date | str | None, label: str) -> date:
    if isinstance(value, date):
        return value
    text = (value or "").strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{label}: give a date as YYYY-MM-DD" + (f" (got {text!r})" if text else "")) from None


def backfill_request(
    from_date: date | str | None,
    to_date: date | str | None,
    reprocess_behavior: str | None = "none",
    max_active_runs: int | str | None = 1,
) -> BackfillRequest:
    """Check a backfill's dates and options (strings from a form are fine).

    Raises InputError naming every bad field at once, in the words of the page's labels.
    """
    errors: dict[str, str] = {}
    dates: dict[str, date] = {}
    for field, value, label in (("from_date", from_date, "From"), ("to_date", to_date, "To")):
        try:
            dates[field] = _date(value, label)
        except ValueError as exc:
            errors[field] = str(exc)
    if not errors and dates["from_date"] > dates["to_date"]:
        errors["to_date"] = (
            f"To ({dates['to_date']}) is before From ({dates['from_date']}): choose a date on or after From"
        )
    runs = 0
    try:
        runs = int(max_active_runs if max_active_runs not in (None, "") else 1)
    except (TypeError, ValueError):
        pass
    if not MIN_ACTIVE_RUNS <= runs <= MAX_ACTIVE_RUNS:
        errors["max_active_runs"] = f"Parallel runs: a whole number from {MIN_ACTIVE_RUNS} to {MAX_ACTIVE_RUNS}"
    behavior = reprocess_behavior or "none"
    if behavior not in REPROCESS_BEHAVIORS:
        *first, last = REPROCESS_LABELS.values()
        errors["reprocess_behavior"] = f"choose {', '.join(first)} or {last}"
    if errors:
        raise InputError(errors)
    return BackfillRequest(dates["from_date"], dates["to_date"], behavior, runs)  # type: ignore[arg-type]


_RUN_NOTES = {"ui": "triggered from the MooMarkets page", "cli": "triggered with the moomarkets CLI"}


def trigger(conn: psycopg.Connection, name: str, *, user_name: str, via: Literal["ui", "cli"] = "ui") -> Outcome[str]:
    """Queue a manual run of the group's DAG for the latest complete interval; the value is its run id.

    ``via`` is what Airflow records as the trigger. AirflowOpError when Airflow refuses (DAG not
    parsed yet, a run in the same second).
    """
    group = store.get_group(conn, name)
    out = Outcome(ops.trigger_run(name, user_name=user_name, note=_RUN_NOTES[via], from_ui=via == "ui"))
    if not group.is_enabled:
        out.notes.append(_PAUSED.format(what="run waits"))
    return out


def backfill(
    conn: psycopg.Connection, name: str, request: BackfillRequest, *, user_name: str, dry_run: bool = False
) -> Outcome[BackfillPlan]:
    """Create (or with ``dry_run`` only plan) an Airflow backfill of the runs scheduled on the request's days.

    AirflowOpError when Airflow refuses (no runs in range, a backfill already running).
    """
    checked = backfill_request(
        request.from_date, request.to_date, request.reprocess_behavior, request.max_active_runs
    )
    group = store.get_group(conn, name)
    plan = ops.create_backfill(
        name, checked.from_date, checked.to_date,
        reprocess_behavior=checked.reprocess_behavior, max_active_runs=checked.max_active_runs,
        user_name=user_name, dry_run=dry_run,
    )
    out = Outcome(plan)
    if not group.is_enabled and not dry_run:
        out.notes.append(_PAUSED.format(what="backfill runs wait"))
    return out
