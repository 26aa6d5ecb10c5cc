"""Server-rendered pages: job groups, data sources, coverage.

Every route here depends on ``page_reader`` (login + DAG read access, else a redirect to Airflow's
login). Forms POST with a CSRF token and answer with a 303 redirect (post/redirect/get); a
rejected form is rendered again with the message next to the field it concerns.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from moomarkets.warehouse import config_store as store
from moomarkets.errors import ConfigError, NotFoundError
from moomarkets import services as actions
from moomarkets.warehouse import queries
from moomarkets.ui.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    Identity,
    PageError,
    csrf_token,
    is_allowed,
    page_identity,
    page_reader,
    page_requires,
    require_page,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLASH_COOKIE = "mm_flash"

router = APIRouter(dependencies=[Depends(page_reader)], include_in_schema=False)


# -- helpers ----------------------------------------------------------------------------------
def is_page(request: Request) -> bool:
    root = request.scope.get("root_path", "")
    return not request.url.path.startswith(f"{root}/api")


def _fmt_dt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M %Z").strip()
    return str(value)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


TEMPLATES.env.filters["dt"] = _fmt_dt
TEMPLATES.env.filters["duration"] = _fmt_duration
TEMPLATES.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True)
TEMPLATES.env.filters["thousands"] = lambda v: "–" if v is None else f"{int(v):,}"


def _airflow_root() -> str:
    from airflow.api_fastapi.app import API_ROOT_PATH

    return API_ROOT_PATH if API_ROOT_PATH.endswith("/") else API_ROOT_PATH + "/"


def render(request: Request, template: str, ident: Identity | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    flash = request.cookies.get(FLASH_COOKIE)
    context = {
        "ident": ident,
        "user_name": ident.name if ident else None,
        "csrf": csrf_token(ident) if ident else "",
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "can_edit": bool(ident) and is_allowed(ident, "edit"),
        "can_run": bool(ident) and is_allowed(ident, "run"),
        "path": lambda _route, **kw: request.url_for(_route, **kw).path,
        "airflow_root": _airflow_root(),
        "flash": flash.split("\x1f") if flash else [],
        **ctx,
    }
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=request.scope.get("root_path") or "/")
    response.headers["Cache-Control"] = "no-store"
    return response


def render_error(request: Request, status_code: int, message: str) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status_code": status_code, "message": message, "user_name": None, "flash": [], "csrf": "",
         "path": lambda _route, **kw: request.url_for(_route, **kw).path, "airflow_root": _airflow_root()},
        status_code=status_code,
    )


def redirect(request: Request, _route: str, messages: list[str] | None = None, **params: Any) -> RedirectResponse:
    response = RedirectResponse(request.url_for(_route, **params).path, status_code=303)
    if messages:
        # a short-lived cookie, read once by the next page; only text (escaped when rendered)
        response.set_cookie(
            FLASH_COOKIE, "\x1f".join(m.replace("\x1f", " ") for m in messages)[:3000].encode().decode("latin-1", "ignore"),
            path=request.scope.get("root_path") or "/", httponly=True, samesite="lax", max_age=60,
        )
    return response


@contextmanager
def warehouse() -> Iterator[Any]:
    from moomarkets.warehouse.db import connect

    try:
        conn = connect(connect_timeout=5, statement_timeout_ms=20000, application_name="moomarkets-ui")
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PageError(503, f"The warehouse database is unavailable: {first}") from None
    try:
        yield conn
    finally:
        conn.close()


def _call(fn, *args, **kwargs):
    """Run a sync DB function with a warehouse connection; NotFound -> 404 page."""
    with warehouse() as conn:
        try:
            return fn(conn, *args, **kwargs)
        except NotFoundError as exc:
            raise PageError(404, exc.reason) from None


async def _form(request: Request, ident: Identity) -> dict[str, str]:
    """The posted form (its CSRF token was checked by ``page_requires``)."""
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k != CSRF_FIELD}


def _dag_states(names: list[str]) -> dict[str, Any]:
    from moomarkets.airflow import ops as airflow_ops

    try:
        return airflow_ops.dag_states(names)
    except Exception:  # noqa: BLE001 - the page still shows the config
        return {}


# -- job groups -------------------------------------------------------------------------------
@router.get("/", name="home")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("groups_page").path, status_code=303)


@router.get("/groups", name="groups_page", response_class=HTMLResponse)
async def groups_page(request: Request, ident: Identity = Depends(page_identity)):
    def load(conn):
        return queries.list_groups(conn)

    groups = await run_in_threadpool(_call, load)
    groups = [g for g in groups if is_allowed(ident, "read", g["name"])]
    states = await run_in_threadpool(_dag_states, [g["name"] for g in groups])
    return render(request, "groups.html", ident, groups=groups, states=states, nav="groups")


def _group_form_context(conn, values: dict[str, Any]) -> dict[str, Any]:
    sources = store.list_sources(conn)
    kinds = {k["kind"]: k for k in queries.kinds()}
    return {
        "values": values,
        "sources": [
            {"code": s.code, "name": s.name, "active": s.is_active,
             "datasets": kinds.get(s.kind, {}).get("datasets", [])}
            for s in sources
        ],
    }


def _group_values(g: Any) -> dict[str, Any]:
    d = g.to_dict() if hasattr(g, "to_dict") else dict(g)
    d["parameters"] = json.dumps(d.get("parameters") or {}, indent=2, ensure_ascii=False)
    return d


@router.get("/groups/new", name="group_new", response_class=HTMLResponse)
async def group_new(request: Request, ident: Identity = Depends(page_requires("edit"))):
    values = {"timezone": "UTC", "is_enabled": True, "parameters": "{}"}
    ctx = await run_in_threadpool(_call, _group_form_context, values)
    return render(request, "group_form.html", ident, mode="new", errors={}, nav="groups", **ctx)


@router.post("/groups/new", name="group_create", response_class=HTMLResponse)
async def group_create(request: Request, ident: Identity = Depends(page_requires("edit"))):
    form = await _form(request, ident)
    # per-DAG rights for the new name, as the API's POST /api/groups (the dependency only saw no name)
    require_page(ident, "edit", form.get("name", "").strip() or None)

    def work(conn):
        try:
            data = actions.group_from_form(None, form)
            return actions.create_group(conn, data), None
        except NotFoundError:
            raise
        except ConfigError as exc:
            return None, (exc, _group_form_context(conn, dict(form, is_enabled=form.get("is_enabled") == "on")))

    outcome, failed = await run_in_threadpool(_call, work)
    if failed:
        exc, ctx = failed
        field = actions.form_field(exc, actions.GROUP_FIELDS)
        return render(request, "group_form.html", ident, status_code=422, mode="new",
                      errors={field: exc.reason if field != "__all__" else str(exc)}, nav="groups", **ctx)
    return redirect(request, "group_page", [f"Created job group {outcome.value.name}.", *outcome.notes],
                    name=outcome.value.name)


async def _group_detail(
    request: Request,
    name: str,
    ident: Identity,
    *,
    status_code: int = 200,
    backfill_values: dict[str, str] | None = None,
    backfill_errors: dict[str, str] | None = None,
) -> HTMLResponse:
    def load(conn):
        group = queries.get_group(conn, name)
        runs = queries.group_runs(conn, name)
        return group, runs

    group, runs = await run_in_threadpool(_call, load)
    states = await run_in_threadpool(_dag_states, [name])
    from moomarkets.config.validate import next_runs

    try:
        upcoming = next_runs(group["schedule"], group["timezone"], count=3)
    except Exception:  # noqa: BLE001
        upcoming = []
    today = date.today()
    values = {"from_date": (today - timedelta(days=7)).isoformat(), "to_date": (today - timedelta(days=1)).isoformat(),
              "reprocess_behavior": "none", "max_active_runs": "1"}
    values.update(backfill_values or {})
    return render(
        request, "group_detail.html", ident, status_code=status_code, group=group, runs=runs, state=states.get(name),
        upcoming=upcoming, can_edit=is_allowed(ident, "edit", name), can_run=is_allowed(ident, "run", name),
        nav="groups", backfill=values, backfill_errors=backfill_errors or {},
    )


@router.get("/groups/{name}", name="group_page", response_class=HTMLResponse)
async def group_page(request: Request, name: str, ident: Identity = Depends(page_requires("read"))):
    return await _group_detail(request, name, ident)


@router.get("/groups/{name}/edit", name="group_edit", response_class=HTMLResponse)
async def group_edit(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))):

    def load(conn):
        return _group_form_context(conn, _group_values(store.get_group(conn, name)))

    ctx = await run_in_threadpool(_call, load)
    return render(request, "group_form.html", ident, mode="edit", errors={}, nav="groups", name=name, **ctx)


@router.post("/groups/{name}/edit", name="group_update", response_class=HTMLResponse)
async def group_update(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))):
    form = await _form(request, ident)

    def work(conn):
        current = store.get_group(conn, name)
        try:
            return actions.update_group(conn, name, actions.group_from_form(current, form)), None
        except NotFoundError:
            raise
        except ConfigError as exc:
            values = dict(form, name=name, is_enabled=form.get("is_enabled") == "on")
            return None, (exc, _group_form_context(conn, values))

    outcome, failed = await run_in_threadpool(_call, work)
    if failed:
        exc, ctx = failed
        field = actions.form_field(exc, actions.GROUP_FIELDS)
        return render(request, "group_form.html", ident, status_code=422, mode="edit", name=name,
                      errors={field: exc.reason if field != "__all__" else str(exc)}, nav="groups", **ctx)
    return redirect(request, "group_page", [f"Saved job group {name}.", *outcome.notes], name=name)


async def _group_toggle(request: Request, name: str, ident: Identity, enabled: bool):
    outcome = await run_in_threadpool(_call, actions.set_group_enabled, name, enabled)
    verb = "Enabled" if enabled else "Disabled"
    dag = "unpaused" if enabled else "paused"
    return redirect(request, "group_page", [f"{verb} job group {name} (its DAG is {dag}).", *outcome.notes], name=name)


@router.post("/groups/{name}/enable", name="group_enable")
async def group_enable(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))):
    return await _group_toggle(request, name, ident, True)


@router.post("/groups/{name}/disable", name="group_disable")
async def group_disable(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))):
    return await _group_toggle(request, name, ident, False)


@router.post("/groups/{name}/run", name="group_run")
async def group_run(request: Request, name: str, ident: Identity = Depends(page_requires("run"))):
    from moomarkets.airflow.ops import AirflowOpError

    try:
        outcome = await run_in_threadpool(_call, actions.trigger, name, ident.name)
    except AirflowOpError as exc:
        return redirect(request, "group_page", [f"Run not started: {exc}"], name=name)
    return redirect(request, "group_page", [f"Queued run {outcome.value}.", *outcome.notes], name=name)


def _backfill_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The Backfill form's values, parsed; errors by field (the page shows them next to the field)."""
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for f, label in (("from_date", "From"), ("to_date", "To")):
        text = form.get(f, "").strip()
        try:
            parsed[f] = date.fromisoformat(text)
        except ValueError:
            errors[f] = f"{label}: give a date as YYYY-MM-DD" + (f" (got {text!r})" if text else "")
    if not errors and parsed["from_date"] > parsed["to_date"]:
        errors["to_date"] = (f"To ({parsed['to_date']}) is before From ({parsed['from_date']}): "
                             "choose a date on or after From")
    try:
        parsed["max_active_runs"] = int(form.get("max_active_runs") or 1)
        if not 1 <= parsed["max_active_runs"] <= 32:
            raise ValueError
    except ValueError:
        errors["max_active_runs"] = "Parallel runs: a whole number from 1 to 32"
    parsed["reprocess_behavior"] = form.get("reprocess_behavior") or "none"
    if parsed["reprocess_behavior"] not in ("none", "failed", "completed"):
        errors["reprocess_behavior"] = "choose skip, redo failed or redo all"
    return parsed, errors


@router.post("/groups/{name}/backfill", name="group_backfill", response_class=HTMLResponse)
async def group_backfill(request: Request, name: str, ident: Identity = Depends(page_requires("run"))):
    from moomarkets.airflow.ops import AirflowOpError

    form = await _form(request, ident)
    parsed, errors = _backfill_form(form)
    if errors:
        values = {k: form.get(k, "") for k in ("from_date", "to_date", "reprocess_behavior", "max_active_runs")}
        return await _group_detail(request, name, ident, status_code=422, backfill_values=values,
                                   backfill_errors=errors)
    from_date, to_date = parsed["from_date"], parsed["to_date"]
    try:
        outcome = await run_in_threadpool(
            _call, actions.backfill, name, from_date=from_date, to_date=to_date,
            reprocess_behavior=parsed["reprocess_behavior"], max_active_runs=parsed["max_active_runs"],
            user_name=ident.name,
        )
    except AirflowOpError as exc:
        return redirect(request, "group_page", [f"Backfill not created: {exc}"], name=name)
    plan = outcome.value
    return redirect(
        request, "group_page",
        [f"Backfill {plan.backfill_id} created: {len(plan.intervals)} run(s) for {from_date} to {to_date}.", *outcome.notes],
        name=name,
    )


# -- data sources -----------------------------------------------------------------------------
@router.get("/sources", name="sources_page", response_class=HTMLResponse)
async def sources_page(request: Request, ident: Identity = Depends(page_identity)):
    sources = await run_in_threadpool(_call, queries.list_sources)
    usage = await run_in_threadpool(_pool_usage, [s["pool"] for s in sources])
    return render(request, "sources.html", ident, sources=sources, usage=usage, nav="sources")


def _pool_usage(names: list[str]) -> dict[str, Any]:
    from moomarkets.airflow import ops as airflow_ops

    try:
        return airflow_ops.pool_usage(names)
    except Exception:  # noqa: BLE001
        return {}


def _source_form_context(values: dict[str, Any]) -> dict[str, Any]:
    return {"values": values, "kinds": queries.kinds()}


@router.get("/sources/new", name="source_new", response_class=HTMLResponse)
async def source_new(request: Request, ident: Identity = Depends(page_requires("edit"))):
    values = {"is_active": True, "config": "{}"}
    return render(request, "source_form.html", ident, mode="new", errors={}, nav="sources", **_source_form_context(values))


@router.post("/sources/new", name="source_create", response_class=HTMLResponse)
async def source_create(request: Request, ident: Identity = Depends(page_requires("edit"))):
    form = await _form(request, ident)

    def work(conn):
        try:
            return actions.create_source(conn, actions.source_from_form(None, form)), None
        except NotFoundError:
            raise
        except ConfigError as exc:
            return None, exc

    outcome, exc = await run_in_threadpool(_call, work)
    if exc:
        field = actions.form_field(exc, actions.SOURCE_FIELDS)
        values = dict(form, is_active=form.get("is_active") == "on")
        return render(request, "source_form.html", ident, status_code=422, mode="new", nav="sources",
                      errors={field: exc.reason if field != "__all__" else str(exc)}, **_source_form_context(values))
    return redirect(request, "source_page", [f"Created data source {outcome.value.code}.", *outcome.notes],
                    code=outcome.value.code)


@router.get("/sources/{code}", name="source_page", response_class=HTMLResponse)
async def source_page(request: Request, code: str, ident: Identity = Depends(page_identity)):
    source = await run_in_threadpool(_call, queries.get_source, code)
    usage = await run_in_threadpool(_pool_usage, [source["pool"]])
    return render(request, "source_detail.html", ident, source=source, usage=usage.get(source["pool"]), nav="sources")


@router.get("/sources/{code}/edit", name="source_edit", response_class=HTMLResponse)
async def source_edit(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))):
    src = await run_in_threadpool(_call, store.get_source, code)
    values = src.to_dict()
    values["config"] = json.dumps(values["config"], indent=2, ensure_ascii=False)
    return render(request, "source_form.html", ident, mode="edit", errors={}, nav="sources", code=code,
                  **_source_form_context(values))


@router.post("/sources/{code}/edit", name="source_update", response_class=HTMLResponse)
async def source_update(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))):
    form = await _form(request, ident)

    def work(conn):
        store.get_source(conn, code)
        try:
            return actions.update_source(conn, code, actions.source_from_form(True, form)), None
        except NotFoundError:
            raise
        except ConfigError as exc:
            return None, exc

    outcome, exc = await run_in_threadpool(_call, work)
    if exc:
        field = actions.form_field(exc, actions.SOURCE_FIELDS)
        values = dict(form, code=code, is_active=form.get("is_active") == "on")
        return render(request, "source_form.html", ident, status_code=422, mode="edit", code=code, nav="sources",
                      errors={field: exc.reason if field != "__all__" else str(exc)}, **_source_form_context(values))
    return redirect(request, "source_page", [f"Saved data source {code}.", *outcome.notes], code=code)


async def _source_toggle(request: Request, code: str, ident: Identity, active: bool):
    outcome = await run_in_threadpool(_call, actions.set_source_active, code, active)
    verb = "Activated" if active else "Deactivated"
    return redirect(request, "source_page", [f"{verb} data source {code}.", *outcome.notes], code=code)


@router.post("/sources/{code}/activate", name="source_activate")
async def source_activate(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))):
    return await _source_toggle(request, code, ident, True)


@router.post("/sources/{code}/deactivate", name="source_deactivate")
async def source_deactivate(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))):
    return await _source_toggle(request, code, ident, False)


# -- coverage ---------------------------------------------------------------------------------
@router.get("/coverage", name="coverage_page", response_class=HTMLResponse)
async def coverage_page(
    request: Request,
    ident: Identity = Depends(page_identity),
    dataset: str | None = None,
    source: str | None = None,
    start: str | None = None,
    end: str | None = None,
    codes: str | None = None,
):
    options = await run_in_threadpool(_call, queries.coverage_options)
    if not dataset and options:
        dataset, source = options[0]["dataset"], options[0]["source"]
    today = date.today()
    error = None
    try:
        end_d = date.fromisoformat(end) if end else today
        start_d = date.fromisoformat(start) if start else None
    except ValueError:
        end_d, start_d, error = today, None, "Dates must be YYYY-MM-DD."
    if start_d is None:
        start_d = (await run_in_threadpool(_call, queries.default_range, dataset or "", source or "", end_d))[0]
    code_list = [c for c in (codes or "").replace(",", " ").split() if c]
    result = None
    if dataset and source and not error:
        try:
            result = await run_in_threadpool(_call, queries.coverage, dataset, source, start_d, end_d, code_list or None)
        except ValueError as exc:
            error = str(exc)
    from moomarkets.warehouse.datasets import DATASETS

    return render(
        request, "coverage.html", ident, nav="coverage", options=options, datasets=sorted(DATASETS), result=result,
        error=error, form={"dataset": dataset or "", "source": source or "", "start": start_d.isoformat(),
                           "end": end_d.isoformat(), "codes": " ".join(code_list)},
        weeks=_weeks(result["days"]) if result else [], today=today,
    )


def _weeks(days: list[dict[str, Any]]) -> list[list[dict[str, Any] | None]]:
    """Days laid out as calendar weeks (Monday first) for the heat map: columns = weeks."""
    if not days:
        return []
    weeks: list[list[dict[str, Any] | None]] = []
    week: list[dict[str, Any] | None] = [None] * days[0]["date"].weekday()
    for d in days:
        week.append(d)
        if len(week) == 7:
            weeks.append(week)
            week = []
    if week:
        weeks.append(week + [None] * (7 - len(week)))
    return weeks

