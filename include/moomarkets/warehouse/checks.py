"""Data checks on the rows of a run's interval, as set-based SQL (no Airflow).

Which checks a dataset runs, with what defaults, is declared with its table (``Dataset.checks``,
see ``config.checks``). Here: the SQL of each check kind; the results are stored and read by
``warehouse.check_results``.

Only the rows the run just loaded are checked, never the whole table: the successful units of the
run record (their dates / codes / ranges) are copied once into a temporary table, and every check
reads that table plus index lookups of neighbouring rows (the previous business day, the next row
of the same issue), so the cost grows with the interval, not with the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Iterable

import psycopg
from psycopg import sql

from moomarkets.config.checks import Check
from moomarkets.warehouse.datasets import Dataset
from moomarkets.warehouse.trading_calendar import TRADING_HOL_DIVS

SAMPLE_SIZE = 20  # failing keys kept per check
LOOKBACK_DAYS = 10  # "previous business day": the latest loaded day at most this many days earlier
# Adjustment conventions by source kind: J-Quants' AdjFactor is the factor *effective on* a date
# (adj = raw x the product of later factors, Adj* rounded to 0.1); Yahoo's factor is the row's own
# cumulative adj_close / close (adj_open..adj_low = raw x factor, 6 decimals).
# Tolerances are the sources' rounding: J-Quants rounds Adj* prices to 0.1 yen; Yahoo's raw prices are
# stored rounded to its price hint (a cent) while adj_* keep Yahoo's unrounded values x factor.
ADJUSTMENT_CONVENTIONS = {"jquants": ("later_factors", 0.05), "yfinance": ("row_factor", 0.005)}
LISTED_INFO_KINDS = ("jquants",)  # sources whose listed_info says which issues trade on a day


@dataclass
class Scope:
    """What a run loaded: whole-market days, and per-code (or all-code) date ranges."""

    source: str
    days: set[date] = field(default_factory=set)  # whole-market days
    ranges: list[tuple[str | None, date, date]] = field(default_factory=list)  # (code or None, from, to)

    @classmethod
    def from_units(cls, source: str, units: Iterable[dict[str, Any]]) -> Scope:
        scope = cls(source)
        for u in units:
            p = u.get("params") or {}
            codes = p.get("codes") or p.get("tickers")
            if "dates" in p:
                days = [date.fromisoformat(d) for d in p["dates"]]
                if codes:
                    scope.ranges.extend((c, d, d) for c in codes for d in days)
                else:
                    scope.days.update(days)
                continue
            lo, hi = p.get("from") or p.get("start"), p.get("to") or p.get("end")
            if not lo or not hi:
                continue
            lo, hi = date.fromisoformat(str(lo)[:10]), date.fromisoformat(str(hi)[:10])
            if codes:
                scope.ranges.extend((c, lo, hi) for c in codes)
            else:
                scope.ranges.append((None, lo, hi))
        return scope

    @property
    def empty(self) -> bool:
        return not self.days and not self.ranges


@dataclass
class Outcome:
    failed: int
    checked: int
    sample: list[dict[str, Any]]
    failed_days: list[date]
    what: str  # unit of ``failed``: "rows", "issue-days", "days"


# ------------------------------------------------------------------------------------------
# Running the checks
# ------------------------------------------------------------------------------------------
def loaded_units(conn: psycopg.Connection, run_pk: int) -> list[dict[str, Any]]:
    """The units of a run that loaded (failed units already fail the run on their own)."""
    rows = conn.execute(
        "SELECT unit FROM run_units WHERE run_pk = %s AND status = 'success' ORDER BY unit_key", (run_pk,)
    ).fetchall()
    return [r["unit"] for r in rows]


def run_checks(
    conn: psycopg.Connection,
    *,
    dataset: Dataset,
    source: str,
    kind: str,
    scope: Scope,
    checks: list[Check],
    codes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``checks`` on the rows ``scope`` covers; one result dict per check (not yet saved).

    Must run inside the caller's transaction (the loaded rows go to a temp table dropped at commit).
    ``codes``: the group's ticker list (None: the whole market).
    """
    if not checks:
        return []
    table = sql.Identifier(dataset.table)
    _materialize(conn, table, scope)
    open_days, closed_days = _classify_days(conn, dataset, scope)
    ctx = _Ctx(conn, dataset, table, source, kind, codes, open_days, closed_days)
    out = []
    for check in checks:
        started = time.monotonic()
        outcome = _IMPLS[check.name](ctx, check)
        limit = int(check.thresholds.get("max_missing", 0)) if check.name == "completeness" else 0
        passed = outcome.failed <= limit
        out.append({
            "check_name": check.name,
            "severity": check.severity,
            "passed": passed,
            "failed": outcome.failed,
            "checked": outcome.checked,
            "sample": outcome.sample[:SAMPLE_SIZE],
            "days": sorted(open_days | set(outcome.failed_days)),
            "failed_days": sorted(set(outcome.failed_days)),
            "thresholds": dict(check.thresholds),
            "message": _message(check, outcome, passed),
            "elapsed_ms": int((time.monotonic() - started) * 1000),
        })
    return out


def _message(check: Check, o: Outcome, passed: bool) -> str:
    if passed and not o.failed:
        return f"{check.name}: ok ({o.checked:,} {o.what} checked)"
    examples = ", ".join(_key_text(s) for s in o.sample[:5])
    more = f" (within max_missing={check.thresholds.get('max_missing')})" if passed else ""
    return f"{check.name} ({check.severity}): {o.failed:,} of {o.checked:,} {o.what} failed{more}, e.g. {examples}"


def _key_text(s: dict[str, Any]) -> str:
    key = " ".join(str(s[k]) for k in ("code", "date") if s.get(k) is not None)
    return f"{key} ({s['why']})" if s.get("why") else key


@dataclass
class _Ctx:
    conn: psycopg.Connection
    dataset: Dataset
    table: sql.Identifier
    source: str
    kind: str
    codes: list[str] | None
    open_days: set[date]
    closed_days: set[date]

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"s": self.source, "codes": self.codes, "days": sorted(self.open_days),
                "lookback": LOOKBACK_DAYS, **extra}


def _materialize(conn: psycopg.Connection, table: sql.Identifier, scope: Scope) -> None:
    """Copy the scope's rows into ``chk_loaded`` (a temp table dropped at commit)."""
    codes = [c for c, _, _ in scope.ranges if c is not None]
    froms = [f for c, f, _ in scope.ranges if c is not None]
    tos = [t for c, _, t in scope.ranges if c is not None]
    all_ranges = [(f, t) for c, f, t in scope.ranges if c is None]
    conn.execute("DROP TABLE IF EXISTS chk_loaded")
    conn.execute(
        sql.SQL(
            """
            CREATE TEMP TABLE chk_loaded ON COMMIT DROP AS
            SELECT t.* FROM {table} t WHERE t.source = %(s)s AND t.date = ANY(%(days)s::date[])
            UNION
            SELECT t.* FROM {table} t
              JOIN unnest(%(codes)s::text[], %(froms)s::date[], %(tos)s::date[]) AS s(code, f, e)
                ON t.source = %(s)s AND t.code = s.code AND t.date BETWEEN s.f AND s.e
            UNION
            SELECT t.* FROM {table} t
              JOIN unnest(%(afrom)s::date[], %(ato)s::date[]) AS s(f, e)
                ON t.source = %(s)s AND t.date BETWEEN s.f AND s.e
            """
        ).format(table=table),
        {"s": scope.source, "days": sorted(scope.days), "codes": codes, "froms": froms, "tos": tos,
         "afrom": [f for f, _ in all_ranges], "ato": [t for _, t in all_ranges]},
    )
    conn.execute("ANALYZE chk_loaded")


def _classify_days(conn: psycopg.Connection, dataset: Dataset, scope: Scope) -> tuple[set[date], set[date]]:
    """(open, closed) trading days of the scope. The calendar decides when it has the day; a day it
    does not know counts as open only if rows were loaded for it (else a holiday is presumed)."""
    days = set(scope.days)
    for _, lo, hi in scope.ranges:
        days.update(lo + timedelta(days=i) for i in range((hi - lo).days + 1))
    if not days:
        return set(), set()
    cal = {r["date"]: r["hol_div"] for r in conn.execute(
        "SELECT date, hol_div FROM trading_calendar WHERE source = %s AND date = ANY(%s::date[])",
        (scope.source, sorted(days)),
    ).fetchall()}
    loaded = {r["date"] for r in conn.execute("SELECT DISTINCT date FROM chk_loaded").fetchall()}
    open_days = {d for d in days if (cal[d] in TRADING_HOL_DIVS if d in cal else d in loaded)}
    closed = {d for d in days if d in cal and cal[d] not in TRADING_HOL_DIVS}
    return open_days, closed


def _rows_outcome(rows: list[dict[str, Any]], checked: int, what: str = "rows") -> Outcome:
    sample = [{"code": r["code"], "date": r["date"].isoformat(), "why": r["why"]} for r in rows[:SAMPLE_SIZE]]
    return Outcome(len(rows), checked, sample, sorted({r["date"] for r in rows}), what)


def _count_loaded(ctx: _Ctx) -> int:
    return ctx.conn.execute("SELECT count(*) AS n FROM chk_loaded").fetchone()["n"]


def _price_sanity(ctx: _Ctx, check: Check) -> Outcome:
    has_volume = "volume" in ctx.dataset.columns
    volume_rules = (
        """
        WHEN open IS NULL AND coalesce(volume, 0) <> 0 THEN 'volume without prices'
        WHEN open IS NULL THEN NULL
        WHEN least(open, high, low, close) <= 0 THEN 'price <= 0'
        WHEN low > least(open, close) OR high < greatest(open, close) THEN 'low/high do not bracket open/close'
        WHEN volume IS NULL THEN 'no volume on a traded row'
        WHEN volume < 0 THEN 'volume < 0'
        WHEN turnover < 0 THEN 'turnover < 0'
        """
        if has_volume
        else """
        WHEN open IS NULL THEN NULL
        WHEN least(open, high, low, close) <= 0 THEN 'price <= 0'
        WHEN low > least(open, close) OR high < greatest(open, close) THEN 'low/high do not bracket open/close'
        """
    )
    rows = ctx.conn.execute(
        f"""
        SELECT code, date, why FROM (
            SELECT code, date, CASE
                WHEN num_nulls(open, high, low, close) NOT IN (0, 4) THEN 'some of open/high/low/close null'
                {volume_rules}
            END AS why
            FROM chk_loaded) x
        WHERE why IS NOT NULL ORDER BY date, code
        """
    ).fetchall()
    return _rows_outcome(rows, _count_loaded(ctx))


def _adjusted_consistency(ctx: _Ctx, check: Check) -> Outcome:
    convention, default_tol = ADJUSTMENT_CONVENTIONS.get(ctx.kind, ADJUSTMENT_CONVENTIONS["jquants"])
    tol = float(check.thresholds.get("tolerance", default_tol)) + 1e-9
    if convention == "row_factor":
        query = """
            SELECT code, date, CASE
                WHEN adjustment_factor <= 0 THEN 'adjustment factor <= 0'
                WHEN (close IS NULL) <> (adj_close IS NULL) THEN 'adj_close null where close is not (or the reverse)'
                WHEN adjustment_factor IS NULL THEN NULL
                WHEN abs(adj_open - open * adjustment_factor) > %(tol)s + abs(open * adjustment_factor) * 1e-8
                  OR abs(adj_high - high * adjustment_factor) > %(tol)s + abs(high * adjustment_factor) * 1e-8
                  OR abs(adj_low - low * adjustment_factor) > %(tol)s + abs(low * adjustment_factor) * 1e-8
                  OR abs(adj_close - close * adjustment_factor) > %(tol)s + abs(close * adjustment_factor) * 1e-8
                THEN 'adj_* is not raw x adjustment_factor'
            END AS why
            FROM chk_loaded
        """
    else:
        # k = this row's adj_close / close; every adj_* must use the same k (within rounding), and k
        # must equal the next priced row's k times the factors in between (the later factors).
        query = sql.SQL(
            """
            SELECT r.code, r.date, CASE
                WHEN r.adjustment_factor IS NULL OR r.adjustment_factor <= 0 THEN 'adjustment factor missing or <= 0'
                WHEN (r.open IS NULL) <> (r.adj_open IS NULL) OR (r.high IS NULL) <> (r.adj_high IS NULL)
                  OR (r.low IS NULL) <> (r.adj_low IS NULL) OR (r.close IS NULL) <> (r.adj_close IS NULL)
                  OR (r.volume IS NULL) <> (r.adj_volume IS NULL)
                THEN 'adj_* null where the raw value is not (or the reverse)'
                WHEN r.close IS NULL OR r.close = 0 OR r.adj_close = 0 THEN NULL
                WHEN abs(r.adj_open - r.open * k.k) > %(tol)s + abs(r.open * k.k) * %(tol)s / r.adj_close
                  OR abs(r.adj_high - r.high * k.k) > %(tol)s + abs(r.high * k.k) * %(tol)s / r.adj_close
                  OR abs(r.adj_low - r.low * k.k) > %(tol)s + abs(r.low * k.k) * %(tol)s / r.adj_close
                  OR abs(r.adj_volume - r.volume / k.k) > %(tol)s + abs(r.volume / k.k) * %(tol)s / r.adj_close
                THEN 'adj_* do not share one factor'
                WHEN n.date IS NOT NULL AND abs(r.adj_close - r.close * n.expect)
                     > %(tol)s + abs(r.close * n.expect) * %(tol)s / n.adj_close
                THEN 'adj_close is not close x the later factors (next row ' || n.date || ')'
            END AS why
            FROM chk_loaded r
            CROSS JOIN LATERAL (SELECT r.adj_close / nullif(r.close, 0) AS k) k
            LEFT JOIN LATERAL (
                SELECT q.date, q.adj_close,
                       (q.adj_close / q.close)::float8 * (
                           SELECT exp(sum(CASE WHEN f.adjustment_factor > 0 THEN ln(f.adjustment_factor::float8)
                                               ELSE 0 END))
                             FROM {table} f
                            WHERE f.source = %(s)s AND f.code = r.code AND f.date > r.date AND f.date <= q.date
                       ) AS expect
                  FROM {table} q
                 WHERE q.source = %(s)s AND q.code = r.code AND q.date > r.date
                   AND q.close > 0 AND q.adj_close > 0
                 ORDER BY q.date LIMIT 1
            ) n ON r.close IS NOT NULL
            """
        ).format(table=ctx.table)
    rows = ctx.conn.execute(
        sql.SQL("SELECT code, date, why FROM ({q}) x WHERE why IS NOT NULL ORDER BY date, code").format(
            q=sql.SQL(query) if isinstance(query, str) else query),
        ctx.params(tol=tol),
    ).fetchall()
    return _rows_outcome(rows, _count_loaded(ctx))


def _completeness(ctx: _Ctx, check: Check) -> Outcome:
    use_li = ctx.dataset.name == "daily_quotes" and ctx.kind in LISTED_INFO_KINDS
    has_li = sql.SQL(
        "EXISTS (SELECT 1 FROM listed_info l WHERE l.source = %(s)s AND l.date = d.d)" if use_li else "false")
    later_li = sql.SQL(
        "(SELECT min(l.date) FROM listed_info l WHERE l.source = %(s)s AND l.date > d.d)" if use_li else "NULL::date")
    from_li = sql.SQL(
        """
        SELECT b.d, l.code, 'listed_info' AS basis
          FROM basis b JOIN listed_info l ON l.source = %(s)s AND l.date = b.d WHERE b.has_li
        UNION ALL
        """ if use_li else "")
    later_filter = sql.SQL(
        """AND (b.later_li IS NULL OR EXISTS (SELECT 1 FROM listed_info l
                 WHERE l.source = %(s)s AND l.date = b.later_li AND l.code = q.code))""" if use_li else "")
    rows = ctx.conn.execute(
        sql.SQL(
            """
            WITH days AS (SELECT unnest(%(days)s::date[]) AS d),
            basis AS (
                SELECT d.d, {has_li} AS has_li, {later_li} AS later_li,
                       (SELECT max(q.date) FROM {table} q
                         WHERE q.source = %(s)s AND q.date < d.d AND q.date >= d.d - %(lookback)s::int
                           AND (%(codes)s::text[] IS NULL OR q.code = ANY(%(codes)s::text[]))) AS prev
                  FROM days d),
            expected AS (
                {from_li}
                SELECT b.d, q.code, 'previous day ' || b.prev AS basis
                  FROM basis b JOIN {table} q ON q.source = %(s)s AND q.date = b.prev
                 WHERE NOT b.has_li {later_filter}
            )
            -- present: loaded by this run (hash join on the temp table), else stored by another run
            SELECT e.d AS date, e.code, e.basis,
                   c.code IS NOT NULL OR EXISTS (
                       SELECT 1 FROM {table} t WHERE t.source = %(s)s AND t.code = e.code AND t.date = e.d) AS present
              FROM expected e
              LEFT JOIN chk_loaded c ON c.code = e.code AND c.date = e.d
             WHERE %(codes)s::text[] IS NULL OR e.code = ANY(%(codes)s::text[])
            """
        ).format(table=ctx.table, has_li=has_li, later_li=later_li, from_li=from_li, later_filter=later_filter),
        ctx.params(),
    ).fetchall()
    missing = sorted((r for r in rows if not r["present"]), key=lambda r: (r["date"], r["code"]))
    failing = [{"code": r["code"], "date": r["date"], "why": f"missing, listed per {r['basis']}"} for r in missing]
    if ctx.closed_days:
        closed = ctx.conn.execute(
            "SELECT code, date FROM chk_loaded WHERE date = ANY(%s::date[]) ORDER BY date, code",
            (sorted(ctx.closed_days),),
        ).fetchall()
        failing += [{"code": r["code"], "date": r["date"], "why": "row on a closed day"} for r in closed]
    return _rows_outcome(failing, len(rows), "issue-days")


def _row_count_drop(ctx: _Ctx, check: Check) -> Outcome:
    max_drop = float(check.thresholds.get("max_drop", 0.05))
    rows = ctx.conn.execute(
        sql.SQL(
            """
            WITH days AS (SELECT unnest(%(days)s::date[]) AS d),
            c AS (
                SELECT d.d,
                       (SELECT count(*) FROM {table} t WHERE t.source = %(s)s AND t.date = d.d
                           AND (%(codes)s::text[] IS NULL OR t.code = ANY(%(codes)s::text[]))) AS n,
                       (SELECT max(t.date) FROM {table} t
                         WHERE t.source = %(s)s AND t.date < d.d AND t.date >= d.d - %(lookback)s::int
                           AND (%(codes)s::text[] IS NULL OR t.code = ANY(%(codes)s::text[]))) AS prev
                  FROM days d)
            SELECT c.d AS date, c.n, c.prev,
                   (SELECT count(*) FROM {table} t WHERE t.source = %(s)s AND t.date = c.prev
                       AND (%(codes)s::text[] IS NULL OR t.code = ANY(%(codes)s::text[]))) AS prev_n
              FROM c WHERE c.prev IS NOT NULL ORDER BY c.d
            """
        ).format(table=ctx.table),
        ctx.params(),
    ).fetchall()
    bad = [r for r in rows if r["n"] < r["prev_n"] * (1 - max_drop)]
    sample = [{"date": r["date"].isoformat(), "rows": r["n"], "previous_day": r["prev"].isoformat(),
               "previous_rows": r["prev_n"],
               "why": f"{r['n']} rows vs {r['prev_n']} on {r['prev']} (-{1 - r['n'] / r['prev_n']:.1%})"}
              for r in bad]
    return Outcome(len(bad), len(rows), sample, [r["date"] for r in bad], "days")


_IMPLS = {
    "price_sanity": _price_sanity,
    "completeness": _completeness,
    "adjusted_consistency": _adjusted_consistency,
    "row_count_drop": _row_count_drop,
}
