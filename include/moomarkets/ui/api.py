"""The JSON API under ``/api`` (documented at ``/openapi.json``), used by the pages' scripts.

Every route depends on ``api_reader`` (401 without an Airflow login, 403 without DAG read
access). Writes need DAG edit access, runs and backfills DAG-run create access; writes riding on
the browser's session cookie need the ``X-CSRF-Token`` header (``GET /api/csrf``).
Validation errors are 422 with FastAPI's usual shape: ``{"detail": [{"loc", "msg", "type"}]}``,
``loc`` naming the field, exactly the checks of the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from moomarkets.config.models import DEFAULT_UPSTREAM_TIMEOUT
from moomarkets.errors import AirflowOpError, ConfigError, NotFoundError
from moomarkets.services import groups as group_service
from moomarkets.services import runs as run_service
from moomarkets.services import sources as source_service
from moomarkets.services import views
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError
from moomarkets.ui import db as ui_db
from moomarkets.ui.auth import (
    CSRF_HEADER,
    Identity,
    api_identity,
    api_reader,
    api_requires,
    csrf_token,
    is_allowed,
    require_api,
)
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse import queries

T = TypeVar("T")

router = APIRouter(dependencies=[Depends(api_reader)], tags=["moomarkets"])


# -- models ---------------------------------------------------------------------------------
ALERTS_DOC = "alert settings: on (kinds), late_after (duration), targets (each names an existing Airflow connection)"
ALERTS_EXAMPLE = {"on": ["failure", "late"], "late_after": "2h",
                  "targets": [{"type": "slack", "conn_id": "slack_alerts"}]}
DEPENDS_ON_DOC = "groups whose complete load of a trading day each run waits for"
UPSTREAM_TIMEOUT_DOC = "how long a run waits for its upstreams before it fails (1m .. 7d, e.g. 6h)"

class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(examples=["jquants"])
    name: str = Field(examples=["J-Quants"])
    kind: str = Field(examples=["jquants"])
    conn_id: str | None = Field(None, description="Airflow connection id; default: the kind's (`GET /api/kinds`)")
    description: str = ""
    is_active: bool = True
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"plan": "light", "max_concurrency": 2}])
    alerts: dict[str, Any] = Field(default_factory=dict, description=ALERTS_DOC, examples=[ALERTS_EXAMPLE])


class SourcePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    kind: str | None = None
    conn_id: str | None = None
    description: str | None = None
    is_active: bool | None = None
    config: dict[str, Any] | None = None
    alerts: dict[str, Any] | None = Field(None, description=ALERTS_DOC + "; `{}` removes them")


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(examples=["jp_daily_quotes"])
    data_source: str = Field(examples=["jquants"])
    dataset: str = Field(examples=["daily_quotes"])
    schedule: str = Field(examples=["0 19 * * 1-5"])
    timezone: str = "UTC"
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict, examples=[{"universe": "all_listed"}])
    is_enabled: bool = True
    depends_on: list[str] = Field(default_factory=list, description=DEPENDS_ON_DOC, examples=[["jp_trading_calendar"]])
    upstream_timeout: str = Field(DEFAULT_UPSTREAM_TIMEOUT, description=UPSTREAM_TIMEOUT_DOC)
    alerts: dict[str, Any] = Field(default_factory=dict, description=ALERTS_DOC + "; each key overrides the source's")


class GroupPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_source: str | None = None
    dataset: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    is_enabled: bool | None = None
    depends_on: list[str] | None = Field(None, description=DEPENDS_ON_DOC + "; `[]` clears them")
    upstream_timeout: str | None = Field(None, description=UPSTREAM_TIMEOUT_DOC)
    alerts: dict[str, Any] | None = Field(None, description=ALERTS_DOC + "; `{}`: the source's apply")


class ActiveBody(BaseModel):
    active: bool


class EnabledBody(BaseModel):
    enabled: bool


class BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_date: date = Field(description="first day whose scheduled run to create (group's timezone)")
    to_date: date = Field(description="last day, inclusive")
    reprocess_behavior: run_service.ReprocessBehavior = "none"
    max_active_runs: int = Field(1, ge=run_service.MIN_ACTIVE_RUNS, le=run_service.MAX_ACTIVE_RUNS)
    dry_run: bool = False


class Source(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    name: str
    kind: str
    conn_id: str
    description: str
    is_active: bool
    config: dict[str, Any]
    alerts: dict[str, Any]
    rate_limit: list[str]
    pool: str
    pool_slots: int | None
    groups: list[str]
    last_error: dict[str, Any] | None


class Group(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    data_source: str
    dataset: str
    schedule: str
    schedule_words: str
    timezone: str
    description: str
    parameters: dict[str, Any]
    is_enabled: bool
    depends_on: list[str]
    upstream_timeout: str
    alerts: dict[str, Any]
    next_run: datetime | None
    last_run_status: str | None
    units_total: int | None
    units_done: int | None
    units_failed: int | None
    rows_loaded: int | None
    dag: dict[str, Any] | None = None
    waiting: list[str] = Field(default_factory=list, description="one line per run waiting for an upstream group")
    recent_alerts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the group's last 10 alerts, newest first (GET /groups/{name} only): kind, key (run id or"
                    " late trading day), target (type:conn_id), dag_id, run_id, status (sent, failed, sending),"
                    " error (scrubbed), attempts, created_at and sent_at (UTC)",
    )


class Changed(BaseModel):
    ok: bool = True
    value: dict[str, Any] | str | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="what to know about the change, then Airflow side effects that failed (the change is saved)",
    )


# -- helpers --------------------------------------------------------------------------------
def _db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, ...)`` on a warehouse connection: no database is 503, a missing row 404, a rejected
    input 422 with ``loc`` naming the field."""
    try:
        return ui_db.run(fn, *args, **kwargs)
    except ui_db.WarehouseUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"warehouse unavailable: {exc.detail}") from None
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.reason) from None
    except ConfigError as exc:
        loc = ["body", *(exc.field.split(".") if exc.field else [])]
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": loc, "msg": exc.reason if exc.field else str(exc), "type": "config_error"}]
        ) from None
    except InputError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", f], "msg": m, "type": "value_error"} for f, m in exc.errors.items()],
        ) from None


async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(_db, fn, *args, **kwargs)


def _with_dag(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states = views.dag_states([g["name"] for g in groups])
    for g in groups:
        st = states.get(g["name"])
        g["dag"] = st.to_dict() if st else None
    return groups


def _changed(outcome: Outcome[Any]) -> Changed:
    value = outcome.value
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return Changed(value=value, notes=outcome.messages)


# -- session --------------------------------------------------------------------------------
@router.get("/csrf", summary="CSRF token for JSON writes made with the session cookie")
async def get_csrf(ident: Identity = Depends(api_identity)) -> dict[str, Any]:
    return {
        "header": CSRF_HEADER,
        "token": csrf_token(ident),
        "user": ident.name,
        "can_edit": is_allowed(ident, "edit"),
        "can_run": is_allowed(ident, "run"),
    }


# -- data sources ---------------------------------------------------------------------------
@router.get("/sources", summary="List data sources", response_model=list[Source])
async def list_sources() -> list[dict[str, Any]]:
    return await db(views.list_sources)


@router.get("/sources/{code}", summary="One data source", response_model=Source)
async def get_source(code: str) -> dict[str, Any]:
    return await db(views.get_source, code)


@router.get("/sources/{code}/pool", summary="The source's Airflow pool: slots and usage")
async def source_pool(code: str) -> dict[str, Any]:
    src = await db(views.get_source, code)
    usage = await run_in_threadpool(views.pool_usage, [src["pool"]], best_effort=False)
    return usage[src["pool"]].to_dict()


@router.get(
    "/sources/{code}/credentials",
    summary="Whether the source's Airflow connection has valid credentials (one cheap API call, cached 5 min)",
)
async def source_credentials(code: str, refresh: bool = False) -> dict[str, Any]:
    src = await db(store.get_source, code)
    result = await run_in_threadpool(views.check_credentials, src, force=refresh)
    return {"code": code, "conn_id": src.conn_id, **result.to_dict()}


@router.post("/sources", summary="Create a data source", status_code=201, response_model=Changed)
async def create_source(body: SourceIn, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    return _changed(await db(source_service.create, body.model_dump()))


@router.patch("/sources/{code}", summary="Change a data source (its code cannot change)", response_model=Changed)
async def update_source(code: str, body: SourcePatch, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    return _changed(await db(source_service.update, code, body.model_dump(exclude_unset=True)))


@router.put("/sources/{code}/active", summary="Activate or deactivate a data source", response_model=Changed)
async def set_source_active(code: str, body: ActiveBody, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    return _changed(await db(source_service.set_active, code, body.active))


# -- job groups -----------------------------------------------------------------------------
@router.get("/groups", summary="List job groups with status, progress and DAG state", response_model=list[Group])
async def list_groups(ident: Identity = Depends(api_identity)) -> list[dict[str, Any]]:
    rows = [g for g in await db(views.list_groups) if is_allowed(ident, "read", g["name"])]
    return await run_in_threadpool(_with_dag, rows)


@router.get("/groups/{name}", summary="One job group", response_model=Group)
async def get_group(name: str, ident: Identity = Depends(api_identity)) -> dict[str, Any]:
    require_api(ident, "read", name)
    group = await db(views.get_group, name)
    group["waiting"] = await db(views.waiting_lines, name)  # runs waiting for an upstream now
    group["recent_alerts"] = await db(views.recent_alerts, name)  # the last alerts sent (alerts_sent's columns only)
    return (await run_in_threadpool(_with_dag, [group]))[0]


@router.get("/groups/{name}/runs", summary="Recent runs of a group, each with its units")
async def group_runs(name: str, ident: Identity = Depends(api_identity), limit: int = Query(15, ge=1, le=100)) -> list[dict[str, Any]]:
    require_api(ident, "read", name)

    def load(conn: Any) -> list[dict[str, Any]]:
        store.get_group(conn, name)  # 404 for an unknown group, not an empty list
        return queries.group_runs(conn, name, limit=limit)

    return await db(load)


@router.post("/groups", summary="Create a job group (its DAG appears at the next parse)", status_code=201, response_model=Changed)
async def create_group(body: GroupIn, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    require_api(ident, "edit", body.name)  # per-DAG rights for the new name
    return _changed(await db(group_service.create, body.model_dump()))


@router.patch("/groups/{name}", summary="Change a job group (its name cannot change)", response_model=Changed)
async def update_group(name: str, body: GroupPatch, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    return _changed(await db(group_service.update, name, body.model_dump(exclude_unset=True)))


@router.put("/groups/{name}/enabled", summary="Enable or disable a group (unpauses or pauses its DAG)", response_model=Changed)
async def set_group_enabled(name: str, body: EnabledBody, ident: Identity = Depends(api_requires("edit"))) -> Changed:
    return _changed(await db(group_service.set_enabled, name, body.enabled))


@router.post("/groups/{name}/runs", summary="Run now: queue a manual run for the latest complete interval",
             status_code=201, response_model=Changed)
async def trigger_group(name: str, ident: Identity = Depends(api_requires("run"))) -> Changed:
    try:
        return _changed(await db(run_service.trigger, name, user_name=ident.name))
    except AirflowOpError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/groups/{name}/backfills", summary="Backfill the runs scheduled on a date range",
             status_code=201, response_model=Changed)
async def backfill_group(name: str, body: BackfillBody, ident: Identity = Depends(api_requires("run"))) -> Changed:
    request = run_service.BackfillRequest(body.from_date, body.to_date, body.reprocess_behavior, body.max_active_runs)
    try:
        outcome = await db(run_service.backfill, name, request, user_name=ident.name, dry_run=body.dry_run)
    except AirflowOpError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _changed(outcome)


# -- coverage -------------------------------------------------------------------------------
@router.get("/coverage", summary="Rows per day against the trading calendar, and issues x days")
async def coverage(
    dataset: str,
    source: str,
    start: date | None = Query(None, description="default: the first loaded day (at most a year back)"),
    end: date | None = Query(None, description="default: today"),
    codes: str | None = Query(None, description="space or comma separated issue codes for the matrix"),
) -> dict[str, Any]:
    end = end or date.today()
    if start is None:
        start = (await db(queries.default_range, dataset, source, end))[0]
    code_list = [c for c in (codes or "").replace(",", " ").split() if c] or None
    try:
        return await db(queries.coverage, dataset, source, start, end, code_list)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/kinds", summary="Source kinds, their datasets and defaults")
async def kinds() -> list[dict[str, Any]]:
    return queries.kinds()
