"""Apply the warehouse migrations (alembic) programmatically."""

from __future__ import annotations

from pathlib import Path

from moomarkets import settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", (url or settings.database_url()).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current(url: str | None = None) -> str | None:
    import psycopg

    with psycopg.connect(url or settings.database_url(), connect_timeout=5) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return row[0] if row else None
