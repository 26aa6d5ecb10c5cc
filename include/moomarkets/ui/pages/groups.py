"""Job group pages: list, detail with recent runs, new/edit forms, enable/disable, run now, backfill, verify."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import psycopg
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from moomarkets.config.models import DEFAULT_UPSTREAM_TIMEOUT
from moomarkets.config.validate import next_runs
from moomarkets.errors import AirflowOpError, MooMarketsError, NotFoundError
from moomarkets.services import groups, runs, verify, views
from moomarkets.services.config_io import alerts_text, parse_alerts
from moomarkets.services import restate as restate_service
from moomarkets.warehouse import check_results
from moomarkets.services.effects import Outcome
from moomarkets.services.inputs import InputError, parse_json_object
from moomarkets.ui.auth import Identity, PageError, is_allowed, page_identity, page_requires, require_page
from moomarkets.ui.pages.common import (
    call,
    field_errors,
    is_checked,
    new_router,
    read_form,
    redirect,
    render,
    submit,
)
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse import queries

router = new_router()

BACKFILL_FIELDS = ("from_date", "to_date", "reprocess_behavior", "max_active_runs")


def group_input(form: dict[str, str], upstreams: list[str], *, new: bool) -> dict[str, Any]:
    """Form strings to the service's values (JSON and YAML parsed, checkbox to bool, the upstreams
    selected); the name only for a new group."""
    texts = ("data_source", "dataset", "schedule", "timezone", "description", "upstream_timeout")
    data: dict[str, Any] = {k: form.get(k, "") for k in texts}
    if new:
        data["name"] = form.get("name", "")
    data["parameters"] = parse_json_object(form.get("parameters", ""), "parameters", label="Parameters")
    data["is_enabled"] = is_checked(form, "is_enabled")
    data["depends_on"] = upstreams
    data["alerts"] = parse_alerts(form.get("alerts", ""), label="Alerts")
    return data


async def _read_group_form(request: Request) -> tuple[dict[str, str], list[str]]:
    """The posted form, and the upstreams picked in the multi-select (``read_form`` keeps one value a field)."""
    form = await read_form(request)
    upstreams = [str(v) for v in (await request.form()).getlist("depends_on")]
    return form, upstreams


def _form_context(conn: psycopg.Connection, values: dict[str, Any], name: str | None) -> dict[str, Any]:
    kinds = {k["kind"]: k for k in queries.kinds()}
    return {
        "values": values,
        "upstream_choices": [g.name for g in store.list_groups(conn) if g.name != name],
        "sources": [
            {"code": s.code, "name": s.name, "active": s.is_active,
             "datasets": kinds.get(s.kind, {}).get("datasets", [])}
            for s in store.list_sources(conn)
        ],
    }


async def _form_page(
    request: Request, ident: Identity, values: dict[str, Any], errors: dict[str, str], *, name: str | None = None
) -> HTMLResponse:
    ctx = await run_in_threadpool(call, _form_context, values, name)
    mode = {"mode": "new"} if name is None else {"mode": "edit", "name": name}
    return render(request, "group_form.html", ident, status_code=422 if errors else 200, errors=errors,
                  nav="groups", **mode, **ctx)


@router.get("/", name="home")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("groups_page").path, status_code=303)


@router.get("/groups", name="groups_page", response_class=HTMLResponse)
async def groups_page(request: Request, ident: Identity = Depends(page_identity)) -> HTMLResponse:
    rows = await run_in_threadpool(call, views.list_groups)
    rows = [g for g in rows if is_allowed(ident, "read", g["name"])]
    states = await run_in_threadpool(views.dag_states, [g["name"] for g in rows])
    return render(request, "groups.html", ident, groups=rows, states=states, nav="groups")


@router.get("/groups/new", name="group_new", response_class=HTMLResponse)
async def group_new(request: Request, ident: Identity = Depends(page_requires("edit"))) -> HTMLResponse:
    values = {"timezone": "UTC", "is_enabled": True, "parameters": "{}", "depends_on": [],
              "upstream_timeout": DEFAULT_UPSTREAM_TIMEOUT}
    return await _form_page(request, ident, values, {})


@router.post("/groups/new", name="group_create", response_class=HTMLResponse)
async def group_create(request: Request, ident: Identity = Depends(page_requires("edit"))) -> Any:
    form, upstreams = await _read_group_form(request)
    # per-DAG rights for the new name, as the API's POST /api/groups (the dependency saw no name)
    require_page(ident, "edit", form.get("name", "").strip() or None)
    outcome, errors = await run_in_threadpool(
        submit, lambda conn: groups.create(conn, group_input(form, upstreams, new=True)), fields=groups.FIELDS
    )
    if errors:
        values = dict(form, is_enabled=is_checked(form, "is_enabled"), depends_on=upstreams)
        return await _form_page(request, ident, values, errors)
    name = outcome.value.name
    return redirect(request, "group_page", [f"Created job group {name}.", *outcome.messages], name=name)


async def _detail_page(
    request: Request,
    name: str,
    ident: Identity,
    *,
    backfill_values: dict[str, str] | None = None,
    backfill_errors: dict[str, str] | None = None,
) -> HTMLResponse:
    def load(conn: psycopg.Connection) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        alerts = groups.alerts_in_effect(conn, store.get_group(conn, name))
        return views.get_group(conn, name), queries.group_runs(conn, name), alerts

    group, recent, alerts = await run_in_threadpool(call, load)
    restated = await run_in_threadpool(call, lambda conn: restate_service.recent_for_group(conn, name))
    checked = await run_in_threadpool(call, lambda conn: check_results.recent_results(conn, name))
    sent_alerts = await run_in_threadpool(call, lambda conn: views.recent_alerts(conn, name))
    # neighbours the user may not read (per-DAG rights) are listed by name only
    names = await run_in_threadpool(call, lambda conn: [g.name for g in store.list_groups(conn)])
    readable = {n for n in names if is_allowed(ident, "read", n)}
    dependencies = await run_in_threadpool(
        call, lambda conn: views.group_dependencies(conn, name, readable.__contains__))
    states = await run_in_threadpool(views.dag_states, [name])
    try:
        upcoming = next_runs(group["schedule"], group["timezone"], count=3)
    except Exception:  # noqa: BLE001 - a hand-edited schedule must not take the page down
        upcoming = []
    history_load = await run_in_threadpool(_history_progress, name)
    today = date.today()
    values = {"from_date": (today - timedelta(days=7)).isoformat(), "to_date": (today - timedelta(days=1)).isoformat(),
              "reprocess_behavior": "none", "max_active_runs": "1"}
    values.update(backfill_values or {})
    return render(
        request, "group_detail.html", ident, status_code=422 if backfill_errors else 200, group=group, runs=recent,
        restatements=restated, checks=checked, alerts_in_effect=alerts, recent_alerts=sent_alerts,
        dependencies=dependencies,
        state=states.get(name), upcoming=upcoming, can_edit=is_allowed(ident, "edit", name),
        can_run=is_allowed(ident, "run", name), nav="groups", backfill=values, backfill_errors=backfill_errors or {},
        reprocess_labels=runs.REPROCESS_LABELS, active_runs_range=(runs.MIN_ACTIVE_RUNS, runs.MAX_ACTIVE_RUNS),
        history_load=history_load,
    )


def _history_progress(name: str) -> dict[str, Any] | None:
    """The latest history load's progress (None when there is none, or when it cannot be read)."""
    from moomarkets import settings
    from moomarkets.services import history

    try:
        return history.history_progress(settings.database_url(), name)
    except Exception:  # noqa: BLE001 - the page must stay up
        return None


@router.get("/groups/{name}", name="group_page", response_class=HTMLResponse)
async def group_page(request: Request, name: str, ident: Identity = Depends(page_requires("read"))) -> HTMLResponse:
    return await _detail_page(request, name, ident)


@router.get("/groups/{name}/edit", name="group_edit", response_class=HTMLResponse)
async def group_edit(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))) -> HTMLResponse:
    values = (await run_in_threadpool(call, store.get_group, name)).to_dict()
    values["parameters"] = json.dumps(values["parameters"] or {}, indent=2, ensure_ascii=False)
    values["alerts"] = alerts_text(values["alerts"])
    return await _form_page(request, ident, values, {}, name=name)


@router.post("/groups/{name}/edit", name="group_update", response_class=HTMLResponse)
async def group_update(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))) -> Any:
    form, upstreams = await _read_group_form(request)
    outcome, errors = await run_in_threadpool(
        submit, lambda conn: groups.update(conn, name, group_input(form, upstreams, new=False)), fields=groups.FIELDS
    )
    if errors:
        values = dict(form, name=name, is_enabled=is_checked(form, "is_enabled"), depends_on=upstreams)
        return await _form_page(request, ident, values, errors, name=name)
    return redirect(request, "group_page", [f"Saved job group {name}.", *outcome.messages], name=name)


async def _toggle(request: Request, name: str, enabled: bool) -> RedirectResponse:
    outcome: Outcome = await run_in_threadpool(call, groups.set_enabled, name, enabled)
    verb, dag = ("Enabled", "unpaused") if enabled else ("Disabled", "paused")
    return redirect(request, "group_page", [f"{verb} job group {name} (its DAG is {dag}).", *outcome.messages],
                    name=name)


@router.post("/groups/{name}/enable", name="group_enable")
async def group_enable(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))) -> RedirectResponse:
    return await _toggle(request, name, True)


@router.post("/groups/{name}/disable", name="group_disable")
async def group_disable(request: Request, name: str, ident: Identity = Depends(page_requires("edit"))) -> RedirectResponse:
    return await _toggle(request, name, False)


@router.post("/groups/{name}/run", name="group_run")
async def group_run(request: Request, name: str, ident: Identity = Depends(page_requires("run"))) -> RedirectResponse:
    try:
        outcome = await run_in_threadpool(call, runs.trigger, name, user_name=ident.name)
    except AirflowOpError as exc:
        return redirect(request, "group_page", [f"Run not started: {exc}"], name=name)
    return redirect(request, "group_page", [f"Queued run {outcome.value}.", *outcome.messages], name=name)


@router.post("/groups/{name}/backfill", name="group_backfill", response_class=HTMLResponse)
async def group_backfill(request: Request, name: str, ident: Identity = Depends(page_requires("run"))) -> Any:
    form = await read_form(request)
    if is_checked(form, "history"):
        return await _history_backfill(request, name, ident, form)
    try:
        req = runs.backfill_request(form.get("from_date"), form.get("to_date"), form.get("reprocess_behavior"),
                                    form.get("max_active_runs"))
    except InputError as exc:
        values = {k: form.get(k, "") for k in BACKFILL_FIELDS}
        return await _detail_page(request, name, ident, backfill_values=values,
                                  backfill_errors=field_errors(exc, BACKFILL_FIELDS))
    try:
        outcome = await run_in_threadpool(call, runs.backfill, name, req, user_name=ident.name)
    except AirflowOpError as exc:
        return redirect(request, "group_page", [f"Backfill not created: {exc}"], name=name)
    plan = outcome.value
    return redirect(
        request, "group_page",
        [f"Backfill {plan.backfill_id} created: {len(plan.intervals)} run(s) for {req.from_date} to {req.to_date}.",
         *outcome.messages],
        name=name,
    )


async def _history_backfill(request: Request, name: str, ident: Identity, form: Any) -> Any:
    """The Backfill form in history mode: few runs of multi-day units (moomarkets.services.history)."""
    from moomarkets import settings
    from moomarkets.services import history

    try:
        req = history.history_request(form.get("from_date"), form.get("to_date"))
    except InputError as exc:
        values = {**{k: form.get(k, "") for k in BACKFILL_FIELDS}, "history": "on"}
        return await _detail_page(request, name, ident, backfill_values=values,
                                  backfill_errors=field_errors(exc, BACKFILL_FIELDS))
    try:
        outcome = await run_in_threadpool(history.backfill_history, settings.database_url(), name, req,
                                          user_name=ident.name, via="ui")
    except (MooMarketsError, psycopg.Error) as exc:
        return redirect(request, "group_page", [f"History load not queued: {exc}"], name=name)
    plan = outcome.value
    return redirect(
        request, "group_page",
        [f"History load queued: {len(plan.queued)} run(s), {plan.days_todo} of {plan.days} trading day(s) "
         f"{req.from_date} to {req.to_date} to load (about {plan.eta_seconds:.0f} s at the rate limit).",
         *outcome.messages],
        name=name,
    )


@router.post("/groups/{name}/verify", name="group_verify")
async def group_verify(request: Request, name: str, ident: Identity = Depends(page_requires("run"))) -> RedirectResponse:
    """A sampled, read-only verify of the last week against the source (what ``moomarkets verify`` does)."""
    from moomarkets import settings

    try:
        report = await run_in_threadpool(verify.verify_recent, settings.database_url(), name)
    except NotFoundError as exc:
        raise PageError(404, exc.reason) from None
    except MooMarketsError as exc:
        return redirect(request, "group_page", [f"Verify not run: {exc}"], name=name)
    except psycopg.Error as exc:
        return redirect(request, "group_page", [f"Verify not run: the warehouse failed ({type(exc).__name__})"],
                        name=name)
    return redirect(request, "group_page", [verify.describe(report)], name=name)
