"""The warehouse as an Airflow Connection: the resolver behind ``moomarkets.settings.database_url()``.

The warehouse is a ``postgres`` Connection, id ``moomarkets_warehouse`` (``MOOMARKETS_WAREHOUSE_CONN_ID``),
found through Airflow's secrets backends like any Connection (``AIRFLOW_CONN_MOOMARKETS_WAREHOUSE``,
Vault, the metadata DB, ...), and read in the Postgres provider's conventions (``PostgresHook``): host,
login, password, port, schema = database, every extra but the hook's own options (``cursor``,
``iam``, ``sqlalchemy_*``, ...) as a libpq parameter (``sslmode``, ``sslrootcert``, ``options``, ...),
``iam`` through the hook's token. The domain code only ever sees the URL built from it.

Precedence (``settings.database_url``): ``$MOOMARKETS_DATABASE_URL`` when set (development, tests),
then this Connection, then a one-line :class:`WarehouseConnectionError` naming the connection id;
there is no default host. The password is registered with Airflow's secrets masker and never put in
a message. A lookup with a ``timeout`` (DAG parse time) runs in a helper thread and gives up after
it, so a slow secrets backend makes the factory fall back to its snapshot instead of hanging the
DAG processor. Answers are cached for :data:`CACHE_SECONDS` per process (a task resolves the URL
several times; a rotated password is picked up within that time).

:func:`install` puts the resolver in place; the DAG factory, the plugin, the hooks and the CLI call it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode

from moomarkets import settings
from moomarkets.errors import WarehouseConnectionError, first_line

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
CONN_TYPES = ("postgres", "postgresql")
_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()


def install() -> None:
    """Make ``settings.database_url()`` resolve the warehouse Connection (idempotent)."""
    settings.set_warehouse_resolver(resolve)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def resolve(timeout: float | None = None, conn_id: str | None = None) -> str:
    """The warehouse URL from its Connection; within ``timeout`` seconds when given."""
    conn_id = conn_id or settings.warehouse_conn_id()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(conn_id)
    if hit and hit[0] > now:
        return hit[1]
    if timeout is None:
        url = _lookup_url(conn_id)
    else:  # imports first, outside the bound: only the lookup itself may be given up on
        import airflow.providers.postgres.hooks.postgres  # noqa: F401
        import airflow.sdk.execution_time.task_runner  # noqa: F401
        import airflow.sdk.log  # noqa: F401

        url = _bounded(conn_id, timeout)
    with _cache_lock:
        _cache[conn_id] = (time.monotonic() + CACHE_SECONDS, url)
    return url


def _bounded(conn_id: str, timeout: float) -> str:
    """``_lookup_url`` in a daemon thread (with this context: Airflow keeps preset connections in a
    ContextVar), abandoned after ``timeout`` seconds. Not signal-based: parsing already runs under
    Airflow's own SIGALRM import timeout."""
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["url"] = ctx.run(_lookup_url, conn_id)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"moomarkets-resolve-{conn_id}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise WarehouseConnectionError(
            f"warehouse connection '{conn_id}' not resolved within {timeout:g} s (secrets backend slow or unreachable)"
        )
    if "error" in box:
        raise box["error"]
    return box["url"]


def _lookup_url(conn_id: str) -> str:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from moomarkets.airflow.connections import lookup

    try:
        conn = lookup(conn_id)  # the Task SDK's lookup in tasks and parsing, the stored one elsewhere
    except Exception as exc:  # noqa: BLE001 - not found, or the secrets backend failed
        if type(exc).__name__ == "AirflowNotFoundException":
            raise WarehouseConnectionError(
                f"warehouse connection '{conn_id}' is not defined: add a postgres connection with that id "
                f"(e.g. AIRFLOW_CONN_{conn_id.upper()}) or set {settings.DATABASE_URL_ENV}"
            ) from None
        raise WarehouseConnectionError(
            f"warehouse connection '{conn_id}' could not be read: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    return connection_url(conn, hook=PostgresHook(postgres_conn_id=conn_id, connection=conn))


def connection_url(conn: Any, *, hook: Any = None) -> str:
    """A libpq URL (``postgresql://...``) for a postgres Connection, with the arguments
    ``PostgresHook.get_conn`` would pass to psycopg; the password is registered with the masker."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.log import mask_secret

    conn_id = getattr(conn, "conn_id", None) or "?"
    conn_type = (getattr(conn, "conn_type", None) or "").lower()
    if conn_type not in CONN_TYPES:
        raise WarehouseConnectionError(
            f"warehouse connection '{conn_id}' has type {conn_type or 'none'!r}; expected 'postgres'"
        )
    if not conn.host:
        raise WarehouseConnectionError(f"warehouse connection '{conn_id}' has no host")
    extra = dict(conn.extra_dejson or {})
    login, password, port = conn.login, conn.password, conn.port
    if extra.get("iam"):  # short-lived token instead of a password, as the hook does
        login, password, port = (hook or PostgresHook(postgres_conn_id=conn_id, connection=conn)).get_iam_token(conn)
    if password:
        mask_secret(password)
        mask_secret(quote(str(password), safe=""))  # the form it takes inside the URL
    params = {
        k: str(v) for k, v in extra.items() if k not in PostgresHook.ignored_extra_options and v is not None
    }
    host = str(conn.host)
    if host.startswith("/"):  # a socket directory goes in the query, not the authority
        params["host"], host = host, ""
    userinfo = ""
    if login:
        userinfo = quote(str(login), safe="")
        if password:
            userinfo += ":" + quote(str(password), safe="")
        userinfo += "@"
    authority = f"{userinfo}{host}" + (f":{int(port)}" if port else "")
    url = f"postgresql://{authority}/{quote(str(conn.schema or ''), safe='')}"
    if params:
        url += "?" + urlencode(params, quote_via=quote)  # %20, not "+": libpq does not decode "+"
    return url
