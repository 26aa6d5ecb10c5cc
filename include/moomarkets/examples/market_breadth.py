"""What the example user DAG computes: daily returns and market breadth from ``daily_quotes``.

The DAG (``dags/example_market_breadth.py``) is scheduled on the asset a complete load of bars
updates (``moomarkets://jquants/daily_quotes``) and only hands this module the days to compute;
the SQL stays here, out of the DAG file, as a data engineer's own package would keep it.

Which days: each triggering asset event's ``extra`` carries the trading days the load covered
(``covers_from`` / ``covers_to``); events from before those keys existed carry the data interval
(or the history range of a history run), whose UTC dates may include the day before the one
loaded: recomputing it is harmless, because each day is replaced as a whole in one transaction.
One run can consume several events (Airflow coalesces events queued while the DAG was busy), so
every window is computed; a manual run without events computes the latest stored day.

Returns are close to close on ``adj_close`` (the source's split/dividend adjusted close, kept
current by the ingest's restatements) against the code's previous stored close, so a split is
not a crash. A day without any previous close (the first day loaded) gets no breadth row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from moomarkets.warehouse.db import connect

ASSET_URI = "moomarkets://jquants/daily_quotes"
SOURCE = "jquants"


def window_of(extra: Mapping[str, Any]) -> tuple[date, date] | None:
    """The dates a load covered, from its asset event's ``extra``: its ``covers_from`` ..
    ``covers_to``; for older events the history range, or the UTC dates of its data interval;
    None when the event says none of these."""
    first, last = extra.get("covers_from"), extra.get("covers_to")
    if first and last:
        return date.fromisoformat(first), date.fromisoformat(last)
    history = extra.get("history")
    if isinstance(history, Mapping) and history.get("from") and history.get("to"):
        return date.fromisoformat(history["from"]), date.fromisoformat(history["to"])
    start, end = extra.get("data_interval_start"), extra.get("data_interval_end")
    if not start or not end:
        return None
    return datetime.fromisoformat(start).date(), datetime.fromisoformat(end).date()


def _days(conn: Any, source: str, windows: Iterable[tuple[date, date]]) -> list[date]:
    """The stored trading days inside the windows; with no window, the latest stored day."""
    windows = list(windows)
    if not windows:
        row = conn.execute("SELECT max(date) AS day FROM daily_quotes WHERE source = %s", (source,)).fetchone()
        return [row["day"]] if row["day"] else []
    found: set[date] = set()
    for first, last in windows:
        found |= {r["date"] for r in conn.execute(
            "SELECT DISTINCT date FROM daily_quotes WHERE source = %s AND date BETWEEN %s AND %s",
            (source, first, last))}
    return sorted(found)


def compute(url: str, *, source: str = SOURCE, windows: Iterable[tuple[date, date]] = ()) -> dict[str, Any]:
    """Recompute returns and breadth of the days in ``windows`` (see the module doc); one transaction."""
    with connect(url) as conn, conn.transaction():
        days = _days(conn, source, windows)
        if not days:
            return {"days": [], "returns": 0, "breadth_rows": 0}
        conn.execute("DELETE FROM analysis_daily_returns WHERE source = %s AND date = ANY(%s)", (source, days))
        conn.execute("DELETE FROM analysis_market_breadth WHERE source = %s AND date = ANY(%s)", (source, days))
        returns = conn.execute(
            """
            INSERT INTO analysis_daily_returns (source, code, date, prev_date, adj_close, prev_adj_close, daily_return)
            SELECT q.source, q.code, q.date, p.date, q.adj_close, p.adj_close,
                   (q.adj_close / p.adj_close - 1)::double precision
              FROM daily_quotes q
              CROSS JOIN LATERAL (SELECT pq.date, pq.adj_close FROM daily_quotes pq
                                   WHERE pq.source = q.source AND pq.code = q.code AND pq.date < q.date
                                     AND pq.adj_close > 0
                                   ORDER BY pq.date DESC LIMIT 1) p
             WHERE q.source = %s AND q.date = ANY(%s) AND q.adj_close IS NOT NULL
            """,
            (source, days),
        ).rowcount
        breadth = conn.execute(
            """
            INSERT INTO analysis_market_breadth (source, date, issues, advancers, decliners, unchanged,
                                                 advance_decline_ratio, mean_return, median_return)
            SELECT source, date, count(*),
                   count(*) FILTER (WHERE daily_return > 0), count(*) FILTER (WHERE daily_return < 0),
                   count(*) FILTER (WHERE daily_return = 0),
                   count(*) FILTER (WHERE daily_return > 0)::double precision
                     / nullif(count(*) FILTER (WHERE daily_return < 0), 0),
                   avg(daily_return), percentile_cont(0.5) WITHIN GROUP (ORDER BY daily_return)
              FROM analysis_daily_returns WHERE source = %s AND date = ANY(%s)
             GROUP BY source, date
            """,
            (source, days),
        ).rowcount
    return {"days": [d.isoformat() for d in days], "returns": returns, "breadth_rows": breadth}
