"""Idempotent loads into the dataset tables (psycopg 3, no Airflow).

A unit's rows are loaded in ONE transaction: COPY into a temp table, then
``INSERT ... ON CONFLICT (key) DO UPDATE`` only where a value changed. A rerun or an overlapping
backfill therefore never duplicates a row, and a unit that fails leaves nothing half-written.
"""

from __future__ import annotations

from typing import Any, Iterable

import psycopg
from psycopg import sql

from moomarkets.warehouse.datasets import Dataset


def upsert_rows(conn: psycopg.Connection, dataset: Dataset, rows: Iterable[dict[str, Any]]) -> int:
    """Load ``rows`` into ``dataset.table``; returns how many rows were inserted or changed.

    Must run inside the caller's transaction. Duplicate keys within ``rows`` keep the last one.
    """
    cols = dataset.columns
    tmp = sql.Identifier(f"tmp_{dataset.table}")
    table = sql.Identifier(dataset.table)
    col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
    key_list = sql.SQL(", ").join(map(sql.Identifier, dataset.key))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS, _seq bigserial) "
            "ON COMMIT DELETE ROWS"
        ).format(tmp=tmp, table=table)
    )
    conn.execute(sql.SQL("TRUNCATE {tmp}").format(tmp=tmp))
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {tmp} ({cols}) FROM STDIN").format(tmp=tmp, cols=col_list)) as copy:
            for row in rows:
                copy.write_row(tuple(row.get(c) for c in cols))
    values = dataset.value_columns
    set_list = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
    )
    changed = sql.SQL(" OR ").join(
        sql.SQL("t.{c} IS DISTINCT FROM EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
    )
    stmt = sql.SQL(
        "INSERT INTO {table} AS t ({cols}) "
        "SELECT DISTINCT ON ({keys}) {cols} FROM {tmp} ORDER BY {keys}, _seq DESC "
        "ON CONFLICT ({keys}) DO UPDATE SET {set_list}, loaded_at = now() WHERE {changed}"
    ).format(table=table, cols=col_list, keys=key_list, tmp=tmp, set_list=set_list, changed=changed)
    with conn.cursor() as cur:
        cur.execute(stmt)
        return cur.rowcount
