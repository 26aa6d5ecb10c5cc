"""Connections to the warehouse (psycopg 3), with bounded connect and statement time."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from moomarkets import settings


def connect(
    url: str | None = None,
    *,
    connect_timeout: float = 10,
    statement_timeout_ms: int | None = None,
    autocommit: bool = False,
    application_name: str = "moomarkets",
) -> psycopg.Connection:
    """Open a warehouse connection; ``statement_timeout_ms`` bounds every statement."""
    options = f"-c statement_timeout={int(statement_timeout_ms)}" if statement_timeout_ms else None
    kwargs = {"options": options} if options else {}
    return psycopg.connect(
        url or settings.database_url(),
        connect_timeout=max(1, int(round(connect_timeout))),
        autocommit=autocommit,
        application_name=application_name,
        row_factory=dict_row,
        **kwargs,
    )


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy with the psycopg 3 driver (used by alembic and Airflow)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
