"""Alembic environment for the warehouse schema (run through ``moomarkets db upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from moomarkets import settings
from moomarkets.warehouse.db import sqlalchemy_url

config = context.config
url = sqlalchemy_url(config.get_main_option("sqlalchemy.url") or settings.database_url())


def run_migrations_offline() -> None:
    context.configure(url=url, literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # One advisory lock so two `db upgrade` calls (say, two containers starting) never race.
        connection.exec_driver_sql("SELECT pg_advisory_lock(727271)")
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.exec_driver_sql("SELECT pg_advisory_unlock(727271)")
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
