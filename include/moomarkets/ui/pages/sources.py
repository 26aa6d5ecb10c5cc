"""Data source pages: list with pool use and last error, detail, new/edit forms, activate/deactivate."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from moomarkets.services import sources, views
from moomarkets.services.config_io import alerts_text, parse_alerts
from moomarkets.services.inputs import parse_json_object
from moomarkets.ui.auth import Identity, page_identity, page_requires
from moomarkets.ui.pages.common import call, is_checked, new_router, read_form, redirect, render, submit
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse import queries

router = new_router()


def source_input(form: dict[str, str], *, new: bool) -> dict[str, Any]:
    """Form strings to the service's values (JSON and YAML parsed, checkbox to bool); the code only for a new source."""
    data: dict[str, Any] = {k: form.get(k, "") for k in ("name", "kind", "conn_id", "description")}
    if new:
        data["code"] = form.get("code", "")
    data["config"] = parse_json_object(form.get("config", ""), "config", label="Config")
    data["is_active"] = is_checked(form, "is_active")
    data["alerts"] = parse_alerts(form.get("alerts", ""), label="Alerts")
    return data


def _form_page(
    request: Request, ident: Identity, values: dict[str, Any], errors: dict[str, str], *, code: str | None = None
) -> HTMLResponse:
    mode = {"mode": "new"} if code is None else {"mode": "edit", "code": code}
    return render(request, "source_form.html", ident, status_code=422 if errors else 200, errors=errors,
                  nav="sources", values=values, kinds=queries.kinds(), **mode)


@router.get("/sources", name="sources_page", response_class=HTMLResponse)
async def sources_page(request: Request, ident: Identity = Depends(page_identity)) -> HTMLResponse:
    rows = await run_in_threadpool(call, views.list_sources)
    usage = await run_in_threadpool(views.pool_usage, [s["pool"] for s in rows])
    return render(request, "sources.html", ident, sources=rows, usage=usage, nav="sources")


@router.get("/sources/new", name="source_new", response_class=HTMLResponse)
async def source_new(request: Request, ident: Identity = Depends(page_requires("edit"))) -> HTMLResponse:
    return _form_page(request, ident, {"is_active": True, "config": "{}"}, {})


@router.post("/sources/new", name="source_create", response_class=HTMLResponse)
async def source_create(request: Request, ident: Identity = Depends(page_requires("edit"))) -> Any:
    form = await read_form(request)
    outcome, errors = await run_in_threadpool(
        submit, lambda conn: sources.create(conn, source_input(form, new=True)), fields=sources.FIELDS
    )
    if errors:
        return _form_page(request, ident, dict(form, is_active=is_checked(form, "is_active")), errors)
    code = outcome.value.code
    return redirect(request, "source_page", [f"Created data source {code}.", *outcome.messages], code=code)


@router.get("/sources/{code}", name="source_page", response_class=HTMLResponse)
async def source_page(request: Request, code: str, ident: Identity = Depends(page_identity)) -> HTMLResponse:
    source = await run_in_threadpool(call, views.get_source, code)
    usage = await run_in_threadpool(views.pool_usage, [source["pool"]])
    return render(request, "source_detail.html", ident, source=source, usage=usage.get(source["pool"]), nav="sources")


@router.get("/sources/{code}/edit", name="source_edit", response_class=HTMLResponse)
async def source_edit(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))) -> HTMLResponse:
    values = (await run_in_threadpool(call, store.get_source, code)).to_dict()
    values["config"] = json.dumps(values["config"], indent=2, ensure_ascii=False)
    values["alerts"] = alerts_text(values["alerts"])
    return _form_page(request, ident, values, {}, code=code)


@router.post("/sources/{code}/edit", name="source_update", response_class=HTMLResponse)
async def source_update(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))) -> Any:
    form = await read_form(request)
    outcome, errors = await run_in_threadpool(
        submit, lambda conn: sources.update(conn, code, source_input(form, new=False)), fields=sources.FIELDS
    )
    if errors:
        return _form_page(request, ident, dict(form, code=code, is_active=is_checked(form, "is_active")), errors,
                          code=code)
    return redirect(request, "source_page", [f"Saved data source {code}.", *outcome.messages], code=code)


async def _toggle(request: Request, code: str, active: bool) -> RedirectResponse:
    outcome = await run_in_threadpool(call, sources.set_active, code, active)
    verb = "Activated" if active else "Deactivated"
    return redirect(request, "source_page", [f"{verb} data source {code}.", *outcome.messages], code=code)


@router.post("/sources/{code}/activate", name="source_activate")
async def source_activate(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))) -> RedirectResponse:
    return await _toggle(request, code, True)


@router.post("/sources/{code}/deactivate", name="source_deactivate")
async def source_deactivate(request: Request, code: str, ident: Identity = Depends(page_requires("edit"))) -> RedirectResponse:
    return await _toggle(request, code, False)
