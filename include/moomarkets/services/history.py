"""History mode for the CLI and the UI: load a long range of trading days in few DAG runs.

``backfill_history`` splits D1..D2 into chunks of at most ``run_days`` trading days and queues one
manual run of the group's DAG per chunk, with ``conf {"history": {...}}`` (see
``moomarkets.pipeline.history``); each run maps its multi-day units in the source's pool, so the
wall time approaches requests / rate limit. Chunks whose days were all loaded already are not
queued, and each run leaves out the days loaded since: a rerun of the same command loads only
what is missing or failed. ``history_progress`` is what the group page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from moomarkets.airflow import history as airflow_history
from moomarkets.errors import AirflowOpError
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import history as pipeline_history
from moomarkets.pipeline.history import HistorySpec
from moomarkets.ratelimit import parse_rates
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError
from moomarkets.services.runs import _date
from moomarkets.services.verify import resolve
from moomarkets.warehouse import history as history_store
from moomarkets.warehouse.db import connect

DEFAULT_RUN_DAYS = 250  # trading days per DAG run: about a year
MAX_RUN_DAYS = 5000


@dataclass(frozen=True)
class HistoryRequest:
    """A checked history request."""

    from_date: date
    to_date: date
    run_days: int = DEFAULT_RUN_DAYS
    unit_days: int | None = None
    redo: bool = False


def history_request(
    from_date: date | str | None, to_date: date | str | None, run_days: int | str | None = None,
    unit_days: int | str | None = None, redo: bool = False,
) -> HistoryRequest:
    """Check a history request (strings from a form are fine); InputError names every bad field."""
    errors: dict[str, str] = {}
    dates: dict[str, date] = {}
    for name, value, label in (("from_date", from_date, "From"), ("to_date", to_date, "To")):
        try:
            dates[name] = _date(value, label)
        except ValueError as exc:
            errors[name] = str(exc)
    if not errors and dates["from_date"] > dates["to_date"]:
        errors["to_date"] = f"To ({dates['to_date']}) is before From ({dates['from_date']}): choose a date on or after From"
    if not errors and (dates["to_date"] - dates["from_date"]).days > pipeline_history.MAX_RANGE_DAYS:
        errors["to_date"] = f"a history range is at most {pipeline_history.MAX_RANGE_DAYS} days"
    numbers: dict[str, int | None] = {}
    for name, value, lo, hi, default in (
        ("run_days", run_days, 1, MAX_RUN_DAYS, DEFAULT_RUN_DAYS),
        ("unit_days", unit_days, 1, pipeline_history.UNIT_DAYS_LIMIT, None),
    ):
        if value in (None, ""):
            numbers[name] = default
            continue
        try:
            n = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            n = 0
        if isinstance(value, bool) or not lo <= n <= hi:
            errors[name] = f"{name.replace('_', ' ')}: a whole number from {lo} to {hi}"
        numbers[name] = n
    if errors:
        raise InputError(errors)
    return HistoryRequest(dates["from_date"], dates["to_date"], int(numbers["run_days"] or DEFAULT_RUN_DAYS),
                          numbers["unit_days"], bool(redo))


def chunk_days(days: list[date], run_days: int) -> list[tuple[date, date]]:
    """Consecutive (first, last) ranges of at most ``run_days`` of the given (sorted) days."""
    return [(days[i], days[min(i + run_days, len(days)) - 1]) for i in range(0, len(days), run_days)]


@dataclass
class HistoryChunk:
    from_date: date
    to_date: date
    days: int
    todo: int
    run_id: str | None = None  # set when queued

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_date.isoformat(), "to": self.to_date.isoformat(), "days": self.days,
                "todo": self.todo, "run_id": self.run_id}


@dataclass
class HistoryPlan:
    """What ``backfill_history`` queued (or with ``dry_run`` would queue)."""

    group: str
    batch_id: str
    from_date: date
    to_date: date
    days: int
    days_todo: int
    chunks: list[HistoryChunk] = field(default_factory=list)  # every chunk; queued ones have a run id
    eta_seconds: float | None = None

    @property
    def queued(self) -> list[HistoryChunk]:
        return [c for c in self.chunks if c.run_id]

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "batch_id": self.batch_id, "from": self.from_date.isoformat(),
                "to": self.to_date.isoformat(), "days": self.days, "days_todo": self.days_todo,
                "runs": len(self.queued), "chunks": [c.to_dict() for c in self.chunks],
                "eta_seconds": self.eta_seconds}


def requests_per_second(pipe: GroupPipeline) -> float:
    """The source's sustained rate: the tightest window's requests per second."""
    return min(r.limit / (r.interval / 1000.0) for r in parse_rates(list(pipe.rates)))


def plan_chunks(pipe: GroupPipeline, url: str, request: HistoryRequest) -> tuple[list[HistoryChunk], int]:
    """The chunks of the range and how many of its days are still to load (all, with ``redo``)."""
    spec = HistorySpec(request.from_date, request.to_date, request.unit_days, request.redo)
    todo, _ = pipeline_history.todo_days(pipe, spec, url)
    days = pipeline_history.candidate_days(pipe, spec, url)
    todo_set = set(todo)
    chunks = []
    for first, last in chunk_days(days, request.run_days):
        inside = [d for d in days if first <= d <= last]
        chunks.append(HistoryChunk(first, last, len(inside), sum(1 for d in inside if d in todo_set)))
    return chunks, len(todo)


def backfill_history(
    url: str, name: str, request: HistoryRequest, *, user_name: str, via: Literal["ui", "cli"] = "cli",
    dry_run: bool = False, now: datetime | None = None,
) -> Outcome[HistoryPlan]:
    """Queue one history run per chunk of D1..D2 that still has days to load (see the module)."""
    checked = history_request(request.from_date, request.to_date, request.run_days, request.unit_days, request.redo)
    pipe = resolve(url, name)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    batch_id = now.strftime("%Y%m%dT%H%M%SZ")
    chunks, todo = plan_chunks(pipe, url, checked)
    plan = HistoryPlan(name, batch_id, checked.from_date, checked.to_date, sum(c.days for c in chunks), todo, chunks)
    plan.eta_seconds = round(todo * _requests_per_day(url, name) / requests_per_second(pipe), 1)
    out = Outcome(plan)
    if not dry_run:
        busy = airflow_history.unfinished_history_runs(name)
        if busy:
            raise AirflowOpError(f"{len(busy)} history run(s) of {name} are still queued or running "
                                 f"({busy[0][0]}, ...); wait for them or mark them failed in Airflow")
    batch = {"id": batch_id, "from": checked.from_date.isoformat(), "to": checked.to_date.isoformat()}
    for i, c in enumerate(ch for ch in chunks if ch.todo or checked.redo):
        if dry_run:
            continue
        spec = HistorySpec(c.from_date, c.to_date, checked.unit_days, checked.redo, batch)
        c.run_id = airflow_history.trigger_history_run(
            name, run_id=f"{airflow_history.RUN_ID_PREFIX}{c.from_date}__{c.to_date}__{batch_id}",
            conf=spec.to_conf(), run_after=now + timedelta(milliseconds=i), user_name=user_name,
            note=f"history {c.from_date}..{c.to_date} ({c.todo} of {c.days} days to load), via {via}",
            from_ui=via == "ui",
        )
    if not todo and not checked.redo:
        out.notes.append(f"every trading day from {checked.from_date} to {checked.to_date} is loaded already")
    if not pipe.group.is_enabled:
        out.notes.append("The group is disabled: its DAG is paused, so the history runs wait until you enable it.")
    return out


def _requests_per_day(url: str, name: str) -> float:
    """Requests per trading day seen in the group's latest history load (1 before any)."""
    with connect(url) as conn:
        latest = history_store.latest_history(conn, name)
    if latest and latest["done_unit_days"]:
        return latest["done_requests"] / latest["done_unit_days"]
    return 1.0


def history_progress(url: str, name: str) -> dict[str, Any] | None:
    """The group's latest history load: days n/N, units n/N (of the runs planned so far), rows,
    requests, and an ETA = remaining days x requests per day seen / the source's rate limit."""
    pipe = resolve(url, name)
    with connect(url) as conn:
        latest = history_store.latest_history(conn, name)
    if latest is None:
        return None
    batch = latest["history"].get("batch") or {}
    frm = date.fromisoformat(batch.get("from") or latest["history"]["from"])
    to = date.fromisoformat(batch.get("to") or latest["history"]["to"])
    spec = HistorySpec(frm, to)
    days = pipeline_history.candidate_days(pipe, spec, url)
    todo, done = pipeline_history.todo_days(pipe, spec, url)
    per_day = latest["done_requests"] / latest["done_unit_days"] if latest["done_unit_days"] else 1.0
    rate = requests_per_second(pipe)
    return {
        "from": frm.isoformat(), "to": to.isoformat(), "batch_id": batch.get("id"),
        "days_total": len(days), "days_done": done,
        "runs": latest["runs"], "units_total": latest["units_total"], "units_done": latest["units_done"],
        "units_failed": latest["units_failed"], "rows_loaded": int(latest["rows_loaded"]),
        "requests": int(latest["requests"]), "requests_per_day": round(per_day, 2),
        "rate_per_second": round(rate, 3),
        "eta_seconds": round(len(todo) * per_day / rate, 1),
    }
