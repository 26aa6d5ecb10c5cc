"""Authentication, authorization and CSRF for the MooMarkets pages and API.

A FastAPI app mounted by a plugin is *not* behind Airflow's login, so every route of this app
depends on one of the two dependencies below (the routers add them; a test enumerates the routes):

- ``page_identity``: HTML pages. No valid Airflow JWT -> 303 redirect to the auth manager's login
  page, with ``next`` pointing back here.
- ``api_identity``: the JSON API. No valid JWT -> 401 with ``WWW-Authenticate: Bearer``.

The user comes from Airflow itself (``airflow.api_fastapi.core_api.security.get_user``): the
``Authorization: Bearer`` header or the ``_token`` cookie the Airflow UI keeps after login, checked
by the configured auth manager. Permissions are Airflow's too: reading needs DAG read access,
changing config needs DAG edit access (``is_authorized_dag(method="PUT")``), triggering runs and
backfills needs ``POST`` on DAG runs, as in Airflow's own REST API.

CSRF: every form carries a token that is an HMAC (keyed from ``[api] secret_key``) of the login
session (the ``_token`` cookie) and a timestamp; POSTs without a valid one, or from another
origin, are refused. JSON writes authenticated by the cookie need the token in ``X-CSRF-Token``;
writes with an explicit Bearer header need none (a browser never adds that header by itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE = 12 * 3600

Action = Literal["read", "edit", "run"]

# Declared for the OpenAPI document (both show up as security schemes); never auto-erroring,
# because the decision is ours: 401 for the API, a login redirect for pages.
_bearer = HTTPBearer(auto_error=False, description="Airflow JWT (POST /auth/token)")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Airflow UI session JWT")


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to Airflow's login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageError(Exception):
    """An error shown as an HTML page (403, 404, 400...)."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.message = message


@dataclass
class Identity:
    """The authenticated Airflow user and how the request proved it."""

    user: Any  # airflow BaseUser
    via: Literal["bearer", "cookie"]
    session_binding: str  # what CSRF tokens are bound to

    @property
    def name(self) -> str:
        try:
            return str(self.user.get_name())
        except Exception:  # noqa: BLE001
            return "?"


async def _resolve(request: Request, bearer: HTTPAuthorizationCredentials | None) -> Identity | None:
    """The Airflow user of this request, or None when unauthenticated (missing/invalid/expired JWT)."""
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, bearer)
    except HTTPException:
        return None
    except Exception:  # noqa: BLE001 - e.g. a garbage token the validator chokes on
        return None
    via: Literal["bearer", "cookie"] = "bearer" if bearer and bearer.scheme.lower() == "bearer" else "cookie"
    cookie = request.cookies.get(COOKIE_NAME)
    binding = cookie if cookie else f"user:{user.get_id()}"
    return Identity(user=user, via=via, session_binding=binding)


async def api_identity(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    _c: str | None = Depends(_cookie),
) -> Identity:
    ident = await _resolve(request, bearer)
    if ident is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Not authenticated: log in to Airflow", headers={"WWW-Authenticate": "Bearer"}
        )
    return ident


async def page_identity(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    _c: str | None = Depends(_cookie),
) -> Identity:
    ident = await _resolve(request, bearer)
    if ident is None:
        next_url = str(request.url) if request.method == "GET" else str(request.url_for("groups_page"))
        raise LoginRequired(next_url)
    return ident


def login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def airflow_root() -> str:
    """The path Airflow's own UI is served under, ending in ``/`` (for links out of the iframe)."""
    from airflow.api_fastapi.app import API_ROOT_PATH

    return API_ROOT_PATH if API_ROOT_PATH.endswith("/") else API_ROOT_PATH + "/"


# -- authorization --------------------------------------------------------------------------
def is_allowed(ident: Identity, action: Action, dag_id: str | None = None) -> bool:
    """Ask Airflow's auth manager. ``edit``: change config (PUT on DAGs); ``run``: trigger/backfill."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    am = get_auth_manager()
    details = DagDetails(id=dag_id) if dag_id else None
    if action == "read":
        return am.is_authorized_dag(method="GET", user=ident.user, details=details)
    if action == "edit":
        return am.is_authorized_dag(method="PUT", user=ident.user, details=details)
    return am.is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, user=ident.user, details=details
    )


_MESSAGES = {
    "read": "You are not allowed to view Airflow DAGs.",
    "edit": "Changing MooMarkets configuration needs permission to edit DAGs.",
    "run": "Triggering runs and backfills needs permission to create DAG runs.",
}


def require_api(ident: Identity, action: Action, dag_id: str | None = None) -> None:
    if not is_allowed(ident, action, dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, _MESSAGES[action])


def require_page(ident: Identity, action: Action, dag_id: str | None = None) -> None:
    if not is_allowed(ident, action, dag_id):
        raise PageError(status.HTTP_403_FORBIDDEN, _MESSAGES[action])


def api_requires(action: Action) -> Callable[..., Awaitable[Identity]]:
    """Route dependency: the API caller may do ``action`` (on the DAG named ``name`` in the path, if any).

    A dependency runs before the body is validated, so a caller without the right gets 403
    whatever they send.
    """

    async def dependency(request: Request, ident: Identity = Depends(api_identity)) -> Identity:
        require_api(ident, action, request.path_params.get("name"))
        if action != "read":
            check_api_csrf(request, ident)
        return ident

    return dependency


def page_requires(action: Action) -> Callable[..., Awaitable[Identity]]:
    """Route dependency for pages: may do ``action``; POSTs also pass the form CSRF check."""

    async def dependency(request: Request, ident: Identity = Depends(page_identity)) -> Identity:
        require_page(ident, action, request.path_params.get("name"))
        if request.method == "POST":
            await check_form_csrf(request, ident)
        return ident

    return dependency


async def api_reader(ident: Identity = Depends(api_identity)) -> Identity:
    """Router-level dependency of the API: authenticated and allowed to read DAGs."""
    require_api(ident, "read")
    return ident


async def page_reader(ident: Identity = Depends(page_identity)) -> Identity:
    """Router-level dependency of the pages: authenticated and allowed to read DAGs."""
    require_page(ident, "read")
    return ident


# -- CSRF -------------------------------------------------------------------------------------
def _csrf_key() -> bytes:
    from airflow.configuration import conf

    secret = conf.get("api", "secret_key", fallback="") or conf.get("api_auth", "jwt_secret", fallback="")
    if not secret:  # never run with an empty key: fall back to a per-process random one
        secret = _PROCESS_SECRET
    return hashlib.sha256(b"moomarkets-ui-csrf|" + secret.encode()).digest()


_PROCESS_SECRET = base64.urlsafe_b64encode(hashlib.sha256(str(time.time_ns()).encode()).digest()).decode()


def _mac(binding: str, ts: int) -> str:
    digest = hmac.new(_csrf_key(), f"{hashlib.sha256(binding.encode()).hexdigest()}|{ts}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def csrf_token(ident: Identity, *, now: float | None = None) -> str:
    ts = int(now if now is not None else time.time())
    return f"{ts}.{_mac(ident.session_binding, ts)}"


def csrf_valid(ident: Identity, token: str | None, *, now: float | None = None) -> bool:
    if not token or "." not in token:
        return False
    ts_text, _, mac = token.partition(".")
    try:
        ts = int(ts_text)
    except ValueError:
        return False
    age = (now if now is not None else time.time()) - ts
    if not -60 <= age <= CSRF_MAX_AGE:
        return False
    return hmac.compare_digest(mac, _mac(ident.session_binding, ts))


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, else Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source != "null"
    got = urlsplit(source)
    here = urlsplit(str(request.base_url))
    host = request.headers.get("x-forwarded-host") or here.netloc
    return got.netloc == host or got.netloc == here.netloc


async def check_form_csrf(request: Request, ident: Identity) -> None:
    """Refuse a form POST without this session's CSRF token or from another origin."""
    form = await request.form()
    if not same_origin(request) or not csrf_valid(ident, str(form.get(CSRF_FIELD) or "")):
        raise PageError(
            status.HTTP_403_FORBIDDEN,
            "The form was rejected (missing or expired CSRF token). Reload the page and try again.",
        )


def check_api_csrf(request: Request, ident: Identity) -> None:
    """JSON writes riding on the session cookie need the CSRF header; Bearer clients do not."""
    if ident.via == "bearer":
        return
    if not same_origin(request) or not csrf_valid(ident, request.headers.get(CSRF_HEADER)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing or invalid {CSRF_HEADER} header")
