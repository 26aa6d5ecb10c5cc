"""Restatement after corporate actions, as plain functions (no Airflow).

Sources restate history: J-Quants rewrites a code's Adj* columns on every split or reverse split
(``AdjFactor`` != 1 on the effective date), Yahoo its Adj Close on every dividend and split and its
OHLCV on every split. A load that sees such an event records it ``pending`` for its run
(``run.fetch_and_load``); :func:`restate_run` (the DAG's ``restate_history`` task) then brings each
affected code's stored history back in line with what the source serves now:

* only rows that may predate the event need it: dated before the event and fetched before the load
  that first showed it (``adjusted_as_of``); none -> the event is closed with 0 requests;
* ONE history fetch per code over that span (J-Quants: one ``code`` + ``from``/``to`` query, pages
  followed; Yahoo: one download of that ticker), through the source's shared rate limit;
* only keys already stored are written (history is corrected, gaps are not filled), each code in one
  transaction, with the fetch's time as the rows' new as-of.

:func:`restate_codes` does the same by hand (``moomarkets restate``), for the whole stored span.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import ExitStack
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from moomarkets.errors import ConfigError, SourceError, scrub
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.sources.base import Credentials, Source
from moomarkets.warehouse import loads
from moomarkets.warehouse import restatements as store
from moomarkets.warehouse.datasets import Dataset, get_dataset
from moomarkets.warehouse.db import connect

if TYPE_CHECKING:
    from moomarkets.config.models import DataSource
    from moomarkets.ratelimit import SourceRateLimiter

log = logging.getLogger(__name__)


class RestatementFailed(SourceError):
    """One or more codes could not be restated; ``retryable`` when every failure may heal;
    ``summary`` is the step's summary (for the metrics of a failed step)."""

    def __init__(self, message: str, *, retryable: bool, summary: dict[str, Any] | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.summary = summary or {}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _restate_code(
    source: Source, dataset: Dataset, url: str, code: str, span: tuple[date, date], ids: list[int],
    secret: str | None,
) -> dict[str, Any]:
    """Re-fetch one code's span and upsert the stored keys in one transaction; record the outcome
    with what this code's requests met (the source's counters before and after: a fetch that raised
    still reports its requests, 429s, 5xx and rate-limit wait)."""
    asked = now()
    before = source.counters.to_dict()

    def met() -> dict[str, Any]:
        after = source.counters.to_dict()
        return {k: round(after[k] - before[k], 3) if k == "wait_seconds" else after[k] - before[k] for k in after}

    try:
        result = source.fetch_history(dataset.name, code, span[0], span[1])
        with connect(url) as conn, conn.transaction():
            keys = store.stored_keys(conn, dataset, source.code, code, span[0], span[1])
            rows = store.only_stored(dataset, result.rows, keys)
            changed = loads.upsert_rows(conn, dataset, rows, as_of=asked)
            store.confirm_as_of(conn, dataset, source.code, code, (r["date"] for r in rows), asked)
            store.mark_done(conn, ids, rows_changed=changed, span=span, **met())
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secret)
        counted = met()
        with connect(url) as conn, conn.transaction():
            store.mark_failed(conn, ids, error=message, **counted)
        retryable = bool(getattr(exc, "retryable", False))
        log.warning("restating %s %s %s..%s failed: %s", source.code, code, span[0], span[1], message)
        return {"code": code, "status": "failed", "error": message, "retryable": retryable,
                "requests": counted["requests"]}
    counted = met()
    log.info("restated %s %s %s..%s: %d row(s) changed, %d request(s)", source.code, code, span[0], span[1],
             changed, counted["requests"])
    return {"code": code, "status": "done", "rows_changed": changed, "requests": counted["requests"],
            "span": [span[0].isoformat(), span[1].isoformat()]}


def _summary(results: list[dict[str, Any]], skipped: int = 0) -> dict[str, Any]:
    failed = [r for r in results if r["status"] == "failed"]
    return {
        "codes": len(results) + skipped,
        "restated": sum(1 for r in results if r["status"] == "done"),
        "skipped": skipped,
        "failed": len(failed),
        "rows_changed": sum(r.get("rows_changed", 0) for r in results),
        "requests": sum(r.get("requests", 0) for r in results),
        "failures": [f"{r['code']}: {r['error']}" for r in failed],
        "retryable": bool(failed) and all(r["retryable"] for r in failed),
    }


def _raise_if_failed(summary: dict[str, Any]) -> None:
    if summary["failed"]:
        raise RestatementFailed(
            f"{summary['failed']} code(s) could not be restated: {'; '.join(summary['failures'][:10])}",
            retryable=summary["retryable"],
            summary=summary,
        )


def restate_run(
    pipe: GroupPipeline,
    *,
    dag_id: str,
    run_id: str,
    credentials: Credentials,
    url: str,
    limiter: SourceRateLimiter | None = None,
) -> dict[str, Any]:
    """Process this run's pending (or earlier failed) restatements; returns a summary.

    Raises :class:`RestatementFailed` (after recording every code) when a code failed.
    """
    dataset = pipe.dataset
    with connect(url) as conn:
        open_ = store.open_for_run(conn, dag_id, run_id)
    if not open_:
        return _summary([])
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in open_:
        by_code[r["code"]].append(r)
    todo: list[tuple[str, tuple[date, date], list[int]]] = []
    skipped = 0
    with connect(url) as conn:
        for code, events in sorted(by_code.items()):
            ids = [e["id"] for e in events]
            before = max(e["event_date"] for e in events)
            as_ofs = [seen for e in events if (seen := store.first_seen(
                conn, source=pipe.source_code, dataset=dataset.name, code=code, event_date=e["event_date"],
                action=e["action"])) is not None]
            span = store.stale_span(conn, dataset, pipe.source_code, code, before=before,
                                    older_than=max(as_ofs) if as_ofs else None)
            if span is None:  # nothing stored from before the source knew: the event is recorded, 0 requests
                with conn.transaction():
                    store.mark_done(conn, ids, rows_changed=0, requests=0, span=None)
                skipped += 1
                continue
            todo.append((code, span, ids))
    results = []
    met: dict[str, Any] = {}  # every request (failed fetches' too), 429s, 5xx, rate-limit wait: for the metrics
    if todo:
        with ExitStack() as stack:
            if limiter is None:
                limiter = pipe.limiter(url)
                stack.callback(limiter.close)
            source = pipe.source(credentials, limiter)
            for code, span, ids in todo:
                results.append(_restate_code(source, dataset, url, code, span, ids, credentials.secret))
            met = source.counters.to_dict()
    summary = {**_summary(results, skipped), **met}
    log.info("restatements of %s: %d code(s), %d restated, %d without stale rows, %d failed; %d row(s) changed,"
             " %d request(s)", run_id, summary["codes"], summary["restated"], skipped, summary["failed"],
             summary["rows_changed"], summary["requests"])
    _raise_if_failed(summary)
    return summary


def restate_codes(
    source_row: DataSource,
    dataset_name: str,
    codes: list[str],
    *,
    credentials: Credentials,
    url: str,
    start: date | None = None,
    end: date | None = None,
    limiter: SourceRateLimiter | None = None,
) -> dict[str, Any]:
    """Restate ``codes`` by hand: re-fetch each code's stored span (or ``[start, end]`` within
    it) and bring the stored rows in line; records a ``manual`` restatement per code."""
    from moomarkets.ratelimit import SourceRateLimiter
    from moomarkets.sources.registry import get_source_class

    cls = get_source_class(source_row.kind)
    if dataset_name not in cls.datasets:
        raise ConfigError(f"source {source_row.code!r} has no dataset {dataset_name!r}", field="dataset")
    dataset = get_dataset(dataset_name)
    if start and end and start > end:
        raise ConfigError(f"--from {start} is after --to {end}", field="from")
    if not codes:
        raise ConfigError("give at least one code", field="codes")
    todo: list[tuple[str, tuple[date, date], list[int]]] = []
    missing: list[str] = []
    with connect(url) as conn:
        for code in dict.fromkeys(cls.normalize_code(c) for c in codes):
            stored = store.stored_span(conn, dataset, source_row.code, code)
            if stored is None:
                missing.append(code)
                continue
            span = (max(stored[0], start or stored[0]), min(stored[1], end or stored[1]))
            if span[0] > span[1]:
                missing.append(code)
                continue
            with conn.transaction():
                rid = store.insert_manual(conn, source=source_row.code, dataset=dataset_name, code=code,
                                          start=span[0], end=span[1])
            todo.append((code, span, [rid]))
    if missing:
        log.warning("nothing stored to restate for %s", ", ".join(missing))
    results = []
    if todo:
        with ExitStack() as stack:
            if limiter is None:
                limiter = SourceRateLimiter(source_row.code, cls.rate_limit(source_row.config), url)
                stack.callback(limiter.close)
            source = cls(source_row.code, source_row.config, credentials, acquire=limiter.acquire,
                         on_throttle=limiter.penalize)
            for code, span, ids in todo:
                results.append(_restate_code(source, dataset, url, code, span, ids, credentials.secret))
    summary = _summary(results)
    summary["missing"] = missing
    summary["results"] = results
    return summary
