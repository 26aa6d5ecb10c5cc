"""Warehouse migrations: each revision upgrades and downgrades cleanly on the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_trading_calendar_table_comment_and_downgrade(warehouse_url):
    from alembic import command

    from moomarkets.warehouse import migrate

    def comment() -> str | None:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute("SELECT obj_description('trading_calendar'::regclass, 'pg_class')").fetchone()[0]

    text = comment()
    assert text and "HolDiv" in text
    for meaning in ("0 = non-business day", "1 = business day", "2 = half-day", "3 = holiday with derivatives"):
        assert meaning in text
    cfg = migrate.alembic_config(warehouse_url)
    command.downgrade(cfg, "0002")
    assert comment() is None and migrate.current(warehouse_url) == "0002"
    command.upgrade(cfg, "head")
    assert comment() == text


def test_listed_info_product_category_columns_and_downgrade(warehouse_url):
    from alembic import command

    from moomarkets.warehouse import migrate

    def columns() -> set[str]:
        with psycopg.connect(warehouse_url) as conn:
            return {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'listed_info'"
                " AND column_name LIKE 'product_category%%'")}

    assert columns() == {"product_category", "product_category_name"}
    cfg = migrate.alembic_config(warehouse_url)
    command.downgrade(cfg, "0006")
    assert columns() == set()
    command.upgrade(cfg, "head")
    assert columns() == {"product_category", "product_category_name"}
