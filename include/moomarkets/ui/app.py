"""The FastAPI app of the MooMarkets management UI (mounted in Airflow's api-server by the plugin).

Server-rendered pages (Jinja2, no JS build) plus a small JSON API under ``/api`` that the pages
use; FastAPI documents it at ``/openapi.json`` and ``/docs``. Every route requires an Airflow
login: see ``moomarkets.ui.auth``. FastAPI's own docs routes are disabled because they would
be public; authenticated replacements are added here.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from moomarkets import __version__
from moomarkets.ui.auth import LoginRequired, PageError, api_reader, login_url

URL_PREFIX = "/moomarkets"
TITLE = "MooMarkets Ingest"


def create_app() -> FastAPI:
    from moomarkets.ui import api, pages

    app = FastAPI(
        title=f"{TITLE} management API",
        version=__version__,
        description=(
            "Data sources, job groups, runs and coverage of the MooMarkets warehouse. Every route needs an "
            "Airflow login: the `_token` cookie of Airflow's UI or `Authorization: Bearer <JWT>` from "
            "`POST /auth/token`. Changes need permission to edit DAGs; runs and backfills permission to "
            "create DAG runs. JSON writes authenticated by the cookie also need the `X-CSRF-Token` header "
            "(GET `/api/csrf`)."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(pages.router)
    app.include_router(api.router, prefix="/api")

    @app.get("/openapi.json", include_in_schema=False, name="openapi")
    async def openapi(_: Any = Depends(api_reader)) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, name="docs")
    async def docs(request: Request, _: Any = Depends(api_reader)) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=str(request.url_for("openapi").path), title=f"{TITLE} API")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(login_url(exc.next_url), status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        return pages.render_error(request, exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> HTMLResponse | JSONResponse:
        if pages.is_page(request):
            return pages.render_error(request, 400, "; ".join(_short(e) for e in exc.errors()))
        return JSONResponse({"detail": _jsonable(exc.errors())}, status_code=422)

    return app


def _short(error: dict[str, Any]) -> str:
    loc = ".".join(str(x) for x in error.get("loc", ())[1:])
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


def _jsonable(errors: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={Exception: str})


__all__ = ["create_app", "URL_PREFIX", "HTTPException"]
