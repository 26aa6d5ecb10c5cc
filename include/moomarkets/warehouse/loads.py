"""Idempotent loads into the dataset tables (psycopg 3, no Airflow).

A unit's rows are loaded in ONE transaction: COPY into a temp table, then
``INSERT ... ON CONFLICT (key) DO UPDATE`` only where a value changed. A rerun or an overlapping
backfill therefore never duplicates a row, and a unit that fails leaves nothing half-written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import psycopg
from psycopg import sql

from moomarkets.warehouse.datasets import Dataset


def _stage(conn: psycopg.Connection, dataset: Dataset, rows: Iterable[dict[str, Any]]) -> None:
    """COPY ``rows`` into the transaction's temp twin of the dataset's table (emptied first)."""
    tmp = sql.Identifier(f"tmp_{dataset.table}")
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS, _seq bigserial) "
            "ON COMMIT DELETE ROWS"
        ).format(tmp=tmp, table=sql.Identifier(dataset.table))
    )
    conn.execute(sql.SQL("TRUNCATE {tmp}").format(tmp=tmp))
    cols = dataset.columns
    with conn.cursor() as cur:
        copy_sql = sql.SQL("COPY {tmp} ({cols}) FROM STDIN").format(
            tmp=tmp, cols=sql.SQL(", ").join(map(sql.Identifier, cols)))
        with cur.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(tuple(row.get(c) for c in cols))


def upsert_rows(
    conn: psycopg.Connection, dataset: Dataset, rows: Iterable[dict[str, Any]], *, as_of: datetime | None = None
) -> int:
    """Load ``rows`` into ``dataset.table``; returns how many rows were inserted or changed.

    Must run inside the caller's transaction. Duplicate keys within ``rows`` keep the last one.

    ``as_of`` is when the source was asked for these rows (default: the transaction's ``now()``).
    For a dataset with an ``as_of_column``, its ``adjusted_columns`` of a stored row are only
    overwritten by a fetch at least as recent as the stored one: a fetch reflects every corporate
    action the source knew when it was asked, so an older fetch (a slow unit committing after a
    restatement, a replayed payload) can never bring back an old adjustment basis. The other value
    columns always update. The as-of column advances only when a row is written.
    """
    if dataset.as_of_column:
        return _upsert_as_of(conn, dataset, rows, as_of)
    cols = dataset.columns
    tmp = sql.Identifier(f"tmp_{dataset.table}")
    table = sql.Identifier(dataset.table)
    col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
    key_list = sql.SQL(", ").join(map(sql.Identifier, dataset.key))
    _stage(conn, dataset, rows)
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


def _upsert_as_of(
    conn: psycopg.Connection, dataset: Dataset, rows: Iterable[dict[str, Any]], as_of: datetime | None
) -> int:
    """``upsert_rows`` for a dataset whose adjusted columns carry an as-of time (see there)."""
    assert dataset.as_of_column is not None
    cols = dataset.columns
    tmp = sql.Identifier(f"tmp_{dataset.table}")
    table = sql.Identifier(dataset.table)
    aso = sql.Identifier(dataset.as_of_column)
    all_cols = (*cols, dataset.as_of_column)
    col_list = sql.SQL(", ").join(map(sql.Identifier, all_cols))
    key_list = sql.SQL(", ").join(map(sql.Identifier, dataset.key))
    _stage(conn, dataset, rows)
    # one as-of for the whole fetch; the transaction's clock when the caller gives none
    conn.execute(sql.SQL("UPDATE {tmp} SET {aso} = coalesce(%s::timestamptz, now())").format(tmp=tmp, aso=aso),
                 (as_of,))
    adjusted = set(dataset.adjusted_columns)
    values = dataset.value_columns
    # the stored adjusted values are newer than this fetch's: keep them
    stale = sql.SQL("(EXCLUDED.{aso} < t.{aso})").format(aso=aso)
    sets, raw_changed, adj_changed = [], [], []
    for c in values:
        ident = sql.Identifier(c)
        if c in adjusted:
            sets.append(sql.SQL("{c} = CASE WHEN {stale} THEN t.{c} ELSE EXCLUDED.{c} END").format(c=ident, stale=stale))
            adj_changed.append(sql.SQL("t.{c} IS DISTINCT FROM EXCLUDED.{c}").format(c=ident))
        else:
            sets.append(sql.SQL("{c} = EXCLUDED.{c}").format(c=ident))
            raw_changed.append(sql.SQL("t.{c} IS DISTINCT FROM EXCLUDED.{c}").format(c=ident))
    # the as-of moves with the adjusted values: forward only, and only when they are written
    adj_any = sql.SQL(" OR ").join(adj_changed) if adj_changed else sql.SQL("false")
    sets.append(sql.SQL(
        "{aso} = CASE WHEN {stale} OR NOT ({adj_any}) THEN coalesce(t.{aso}, EXCLUDED.{aso}) ELSE EXCLUDED.{aso} END"
    ).format(aso=aso, stale=stale, adj_any=adj_any))
    changed = sql.SQL("({raw}) OR (NOT coalesce({stale}, false) AND ({adj_any}))").format(
        raw=sql.SQL(" OR ").join(raw_changed) if raw_changed else sql.SQL("false"), stale=stale, adj_any=adj_any
    )
    stmt = sql.SQL(
        "INSERT INTO {table} AS t ({cols}) "
        "SELECT DISTINCT ON ({keys}) {cols} FROM {tmp} ORDER BY {keys}, _seq DESC "
        "ON CONFLICT ({keys}) DO UPDATE SET {set_list}, loaded_at = now() WHERE {changed}"
    ).format(table=table, cols=col_list, keys=key_list, tmp=tmp, set_list=sql.SQL(", ").join(sets), changed=changed)
    with conn.cursor() as cur:
        cur.execute(stmt)
        return cur.rowcount
