"""What every page module shares: templates, rendering, flash messages, the warehouse call and
the one place a rejected input becomes messages next to form fields."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from moomarkets.errors import ConfigError, NotFoundError
from moomarkets.services.inputs import InputError
from moomarkets.ui import db
from moomarkets.ui.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    Identity,
    PageError,
    airflow_root,
    csrf_token,
    is_allowed,
    page_reader,
)

T = TypeVar("T")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))
FLASH_COOKIE = "mm_flash"


def new_router() -> APIRouter:
    """A router of pages: every route needs a login with DAG read access; none is in the API docs."""
    return APIRouter(dependencies=[Depends(page_reader)], include_in_schema=False)


def is_page(request: Request) -> bool:
    """True for page URLs, False for the JSON API (errors are rendered differently)."""
    root = request.scope.get("root_path", "")
    return not request.url.path.startswith(f"{root}/api")


# -- template filters -------------------------------------------------------------------------
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


# -- responses --------------------------------------------------------------------------------
def _path_for(request: Request) -> Callable[..., str]:
    return lambda _route, **kw: request.url_for(_route, **kw).path


def render(
    request: Request, template: str, ident: Identity | None, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """A page, with the user's rights, a CSRF token for its forms and the pending flash messages."""
    flash = request.cookies.get(FLASH_COOKIE)
    context = {
        "ident": ident,
        "user_name": ident.name if ident else None,
        "csrf": csrf_token(ident) if ident else "",
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "can_edit": bool(ident) and is_allowed(ident, "edit"),
        "can_run": bool(ident) and is_allowed(ident, "run"),
        "path": _path_for(request),
        "airflow_root": airflow_root(),
        "flash": flash.split("\x1f") if flash else [],
        **ctx,
    }
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=request.scope.get("root_path") or "/")
    response.headers["Cache-Control"] = "no-store"
    return response


def render_error(request: Request, status_code: int, message: str) -> HTMLResponse:
    """The error page (no user context: it is also shown when the login failed)."""
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status_code": status_code, "message": message, "user_name": None, "flash": [], "csrf": "",
         "path": _path_for(request), "airflow_root": airflow_root()},
        status_code=status_code,
    )


def redirect(request: Request, _route: str, messages: list[str] | None = None, **params: Any) -> RedirectResponse:
    """303 to a named page (post/redirect/get); ``messages`` are shown once there."""
    response = RedirectResponse(request.url_for(_route, **params).path, status_code=303)
    if messages:
        # a short-lived cookie, read once by the next page; only text (escaped when rendered)
        response.set_cookie(
            FLASH_COOKIE, "\x1f".join(m.replace("\x1f", " ") for m in messages)[:3000].encode().decode("latin-1", "ignore"),
            path=request.scope.get("root_path") or "/", httponly=True, samesite="lax", max_age=60,
        )
    return response


# -- the warehouse and forms --------------------------------------------------------------------
def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, ...)`` on a warehouse connection; a missing row is a 404 page, no database a 503."""
    try:
        return db.run(fn, *args, **kwargs)
    except db.WarehouseUnavailable as exc:
        raise PageError(503, f"The warehouse database is unavailable: {exc.detail}") from None
    except NotFoundError as exc:
        raise PageError(404, exc.reason) from None


def field_errors(exc: ConfigError | InputError, fields: Iterable[str]) -> dict[str, str]:
    """A rejected input as messages by form field; one that names no field of the form goes on top (``__all__``)."""
    known = set(fields)
    if isinstance(exc, InputError):
        return {(f if f in known else "__all__"): message for f, message in exc.errors.items()}
    f = (exc.field or "").split(".", 1)[0]  # config.rate_limit -> the config textarea
    return {f: exc.reason} if f in known else {"__all__": str(exc)}


def submit(fn: Callable[..., T], *args: Any, fields: Iterable[str], **kwargs: Any) -> tuple[T | None, dict[str, str]]:
    """Like ``call``, but a rejected input comes back as field errors: ``(None, errors)``; else ``(value, {})``."""
    try:
        return call(fn, *args, **kwargs), {}
    except (ConfigError, InputError) as exc:
        return None, field_errors(exc, fields)


async def read_form(request: Request) -> dict[str, str]:
    """The posted form without its CSRF token (``page_requires`` checked it)."""
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k != CSRF_FIELD}


def is_checked(form: dict[str, str], name: str) -> bool:
    """Whether a checkbox was ticked (browsers send ``on``)."""
    return form.get(name) in ("on", "true", "1")
