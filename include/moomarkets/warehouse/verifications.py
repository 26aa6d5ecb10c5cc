"""Compare a unit's source rows with the warehouse, and the ``verifications`` records (no Airflow).

The comparison runs in SQL: the source rows are COPYed into a temporary table shaped like the
dataset's table, so both sides are compared as stored (``numeric`` against ``numeric``, with
``IS DISTINCT FROM``, the very test ``loads.upsert_rows`` uses to decide a row changed). A unit is
therefore "equal" exactly when loading it again would change nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

import psycopg
from psycopg import sql

from moomarkets.warehouse.datasets import Dataset

DATE_COLUMNS = ("date", "disclosed_date")  # the column a unit's dates select, first one the table has


@dataclass(frozen=True)
class Scope:
    """Which warehouse rows a unit's fetch covers (for "extra" rows): the source's rows on these
    dates (or in ``date_from..date_to``) and, when given, of these codes."""

    source: str
    dates: tuple[date, ...] | None = None
    date_from: date | None = None
    date_to: date | None = None
    codes: tuple[str, ...] | None = None


@dataclass
class Comparison:
    """One unit's differences; keys as JSON-able dicts, mismatches with their differing columns."""

    source_rows: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    # {"key": {...}, "columns": {column: [warehouse value, source value]}}
    mismatched: list[dict[str, Any]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def date_column(dataset: Dataset) -> str | None:
    return next((c for c in DATE_COLUMNS if c in dataset.columns), None)


def _scope_sql(dataset: Dataset, scope: Scope, alias: str) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(alias, "source"))]
    params: list[Any] = [scope.source]
    dcol = date_column(dataset)
    if dcol is not None:
        ident = sql.Identifier(alias, dcol)
        if scope.dates is not None:
            parts.append(sql.SQL("{} = ANY(%s)").format(ident))
            params.append(list(scope.dates))
        if scope.date_from is not None:
            parts.append(sql.SQL("{} >= %s").format(ident))
            params.append(scope.date_from)
        if scope.date_to is not None:
            parts.append(sql.SQL("{} <= %s").format(ident))
            params.append(scope.date_to)
    if scope.codes is not None and "code" in dataset.columns:
        parts.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(alias, "code")))
        params.append(list(scope.codes))
    return sql.SQL(" AND ").join(parts), params


def compare_rows(
    conn: psycopg.Connection,
    dataset: Dataset,
    rows: Iterable[dict[str, Any]],
    scope: Scope,
    *,
    columns: Iterable[str] | None = None,
) -> Comparison:
    """Compare ``rows`` (normalized source rows) with ``dataset.table`` within ``scope``.

    Must run inside the caller's transaction (the temporary table is dropped at its end).
    ``columns``: the value columns to compare (default: all of them). Duplicate keys within
    ``rows`` keep the last one, as a load would.
    """
    cols = dataset.columns
    values = [c for c in (columns if columns is not None else dataset.value_columns) if c in dataset.value_columns]
    table = sql.Identifier(dataset.table)
    tmp = sql.Identifier("pg_temp", f"verify_{dataset.table}")
    col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
    keys = sql.SQL(", ").join(map(sql.Identifier, dataset.key))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {tmp}").format(tmp=tmp))
    conn.execute(
        sql.SQL("CREATE TABLE {tmp} (LIKE {table} INCLUDING DEFAULTS, _seq bigserial) ON COMMIT DROP").format(
            tmp=tmp, table=table
        )
    )
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {tmp} ({cols}) FROM STDIN").format(tmp=tmp, cols=col_list)) as copy:
            for row in rows:
                copy.write_row(tuple(row.get(c) for c in cols))
    src = sql.SQL("(SELECT DISTINCT ON ({keys}) * FROM {tmp} ORDER BY {keys}, _seq DESC)").format(keys=keys, tmp=tmp)

    def cols_of(alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, c) for c in dataset.key)

    def same_key(a: str, b: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(a, c), sql.Identifier(b, c)) for c in dataset.key
        )

    def keyed(row: dict[str, Any]) -> dict[str, Any]:
        return {c: _jsonable(row[c]) for c in dataset.key}

    out = Comparison()
    out.source_rows = conn.execute(sql.SQL("SELECT count(*) AS n FROM {src} s").format(src=src)).fetchone()["n"]
    missing = sql.SQL(
        "SELECT {kc} FROM {src} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {same}) ORDER BY {kc}"
    ).format(kc=cols_of("s"), src=src, table=table, same=same_key("t", "s"))
    out.missing = [keyed(r) for r in conn.execute(missing)]
    where, params = _scope_sql(dataset, scope, "t")
    extra = sql.SQL(
        "SELECT {kc} FROM {table} t WHERE {where} AND NOT EXISTS (SELECT 1 FROM {src} s WHERE {same}) ORDER BY {kc}"
    ).format(kc=cols_of("t"), table=table, where=where, src=src, same=same_key("t", "s"))
    out.extra = [keyed(r) for r in conn.execute(extra, params)]
    if values:
        differs = sql.SQL(" OR ").join(
            sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c)) for c in values
        )
        which = sql.SQL(", ").join(
            sql.SQL("CASE WHEN t.{c} IS DISTINCT FROM s.{c} THEN {name} END").format(
                c=sql.Identifier(c), name=sql.Literal(c)
            )
            for c in values
        )
        stmt = sql.SQL(
            "SELECT {key_t}, array_remove(ARRAY[{which}]::text[], NULL) AS diff, to_jsonb(t) AS w, to_jsonb(s) AS v "
            "FROM {src} s JOIN {table} t ON {same} WHERE {differs} ORDER BY {key_t}"
        ).format(key_t=cols_of("t"), which=which, src=src, table=table, same=same_key("t", "s"), differs=differs)
        for r in conn.execute(stmt):
            out.mismatched.append(
                {"key": keyed(r), "columns": {c: [r["w"].get(c), r["v"].get(c)] for c in r["diff"]}}
            )
    return out


def delete_extra(conn: psycopg.Connection, dataset: Dataset, scope: Scope, keys: list[dict[str, Any]]) -> int:
    """Delete the warehouse rows with these keys (a comparison's ``extra``) within ``scope``; returns
    how many went. Run it in the comparison's transaction."""
    if not keys:
        return 0
    where, params = _scope_sql(dataset, scope, "t")
    match = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier("t", c)) for c in dataset.key
    )
    stmt = sql.SQL("DELETE FROM {table} t WHERE {where} AND {match}").format(
        table=sql.Identifier(dataset.table), where=where, match=match
    )
    deleted = 0
    with conn.cursor() as cur:
        for key in keys:
            cur.execute(stmt, [*params, *(key[c] for c in dataset.key)])
            deleted += cur.rowcount
    return deleted


# -- the verifications table -----------------------------------------------------------------
def start(
    conn: psycopg.Connection,
    *,
    group_name: str,
    source: str,
    dataset: str,
    date_from: date,
    date_to: date,
    sample: int | None,
    seed: int | None,
    repair: bool,
    delete_extra: bool = False,
    units: int,
    via: str = "cli",
) -> int:
    """Open a verification record (status running); returns its id."""
    row = conn.execute(
        """
        INSERT INTO verifications (group_name, source, dataset, date_from, date_to, sample, seed, repair, delete_extra,
                                   units, via)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (group_name, source, dataset, date_from, date_to, sample, seed, repair, delete_extra, units, via),
    ).fetchone()
    return row["id"] if isinstance(row, dict) else row[0]


def add_repaired(conn: psycopg.Connection, verification_id: int, rows: int, deleted: int = 0) -> None:
    """Count rows a repair upserted (and deleted); call in the same transaction as the change."""
    conn.execute(
        "UPDATE verifications SET repaired = repaired + %s, deleted = deleted + %s WHERE id = %s",
        (rows, deleted, verification_id),
    )


def finish(
    conn: psycopg.Connection,
    verification_id: int,
    *,
    status: str,
    units_failed: int,
    requests: int,
    source_rows: int,
    missing: int,
    extra: int,
    mismatched: int,
    stale_adjusted: int,
    details: dict[str, Any],
    error: str | None = None,
) -> None:
    conn.execute(
        """
        UPDATE verifications
           SET status = %s, units_failed = %s, requests = %s, source_rows = %s, missing = %s, extra = %s,
               mismatched = %s, stale_adjusted = %s, details = %s, error = %s, finished_at = now()
         WHERE id = %s
        """,
        (status, units_failed, requests, source_rows, missing, extra, mismatched, stale_adjusted,
         json.dumps(details, default=str), error, verification_id),
    )


def get(conn: psycopg.Connection, verification_id: int) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM verifications WHERE id = %s", (verification_id,)).fetchone()


def recent(conn: psycopg.Connection, group_name: str, limit: int = 5) -> list[dict[str, Any]]:
    """The group's latest verifications, newest first."""
    return conn.execute(
        "SELECT * FROM verifications WHERE group_name = %s ORDER BY started_at DESC, id DESC LIMIT %s",
        (group_name, limit),
    ).fetchall()
