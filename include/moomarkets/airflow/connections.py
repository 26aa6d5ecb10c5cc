"""Airflow Connections -> source credentials, and the words for a credential check's outcome.

The one place that reads a source's Connection: the tasks, the management UI's credential column
and the connection form's **Test** button all go through :func:`credentials_from_connection`, so a
Connection means the same thing everywhere (host, schema, port, password, extras).
"""

from __future__ import annotations

import logging
from typing import Any

from moomarkets.pipeline.credentials import CheckOutcome
from moomarkets.sources.base import Credentials

log = logging.getLogger(__name__)

# Airflow raises AirflowNotFoundException (core) or AirflowRuntimeError (Task SDK) for a missing
# connection; compared by name because the Task SDK and core classes differ by context.
_MISSING = ("AirflowNotFoundException", "AirflowRuntimeError")


def credentials_from_connection(conn: Any) -> Credentials:
    """The credentials a source gets from an Airflow Connection object.

    ``password`` is the API key (registered with Airflow's secrets masker so it never reaches a
    task log); ``host`` (with ``schema`` as the scheme and ``port`` when given) replaces the
    source's base URL, which is how a proxy or a local fake is used; ``extra`` is passed on.
    """
    password = getattr(conn, "password", None) or None
    if password:
        from airflow.sdk.log import mask_secret

        mask_secret(password)
    host = getattr(conn, "host", None) or None
    schema = getattr(conn, "schema", None)
    port = getattr(conn, "port", None)
    if host:
        scheme, sep, rest = host.partition("://")
        if not sep:  # no scheme in the host: the schema field, else HTTPS
            scheme, rest = schema or "https", host
        hostpart, slash, path = rest.partition("/")
        hostpart = hostpart.rpartition("@")[2]  # never carry user:password@ into URLs and messages
        if port and ":" not in hostpart:
            hostpart = f"{hostpart}:{port}"
        host = f"{scheme}://{hostpart}{slash}{path}"
    extra = getattr(conn, "extra_dejson", None) or {}
    return Credentials(secret=password, host=host, extra=dict(extra))


def lookup(conn_id: str) -> Any:
    """The Connection from the secrets backends of this process's context.

    In a task (a supervisor channel is set): the Task SDK's lookup (env vars, a configured backend
    such as Vault, then the API server). Anywhere else (the ``moomarkets`` CLI, the API server):
    the lookup ``airflow connections get`` uses (env vars, a configured backend, the metadata DB),
    because the Task SDK's lookup outside a task leaves the metadata DB out.
    """
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    from airflow.models.connection import Connection as StoredConnection

    return StoredConnection.get_connection_from_secrets(conn_id)


def get_credentials(conn_id: str) -> Credentials:
    """Read ``conn_id`` when it is needed; a missing Connection means no credentials (Yahoo needs none)."""
    try:
        conn = lookup(conn_id)
    except Exception as exc:  # noqa: BLE001 - only "not defined" is tolerated
        if type(exc).__name__ not in _MISSING:
            raise
        log.warning("connection %r is not defined; calling the source without credentials", conn_id)
        return Credentials()
    return credentials_from_connection(conn)


def connection_exists(conn_id: str) -> bool | None:
    """Whether Airflow has the connection (None when that cannot be told)."""
    try:
        lookup(conn_id)
    except Exception as exc:  # noqa: BLE001
        return False if type(exc).__name__ in _MISSING else None
    return True


def describe_check(outcome: CheckOutcome, *, source_code: str | None = None, conn_missing: str | None = None) -> str:
    """One sentence for a credential check's outcome: the UI column and the Test button use it.

    ``conn_missing`` (e.g. "Airflow connection 'x' does not exist") is prepended where the missing
    connection is the likely cause.
    """
    prefix = f"{conn_missing}; " if conn_missing else ""
    detail = outcome.detail
    if outcome.reason == "valid":
        if conn_missing:
            return f"valid without credentials ({conn_missing}; this source needs no key)"
        return "credentials are valid"
    limit = f"the {source_code} rate limit" if source_code else "the source's rate limit"
    return {
        "rejected": f"{prefix}credentials rejected: {detail}",
        "not_covered": f"the key is valid but the plan does not cover this data: {detail}",
        "busy": f"not checked yet: {limit} is fully used by running tasks; try again",
        "no_limiter": f"not checked: the shared rate limit is unavailable ({detail})",
        "unreachable": f"{prefix}could not reach the API: {detail}",
    }[outcome.reason]
