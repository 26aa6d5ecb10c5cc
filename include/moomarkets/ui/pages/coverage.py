"""The coverage page: rows per day against the trading calendar, and issues x days."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from moomarkets.ui.auth import Identity, page_identity
from moomarkets.ui.pages.common import call, new_router, render
from moomarkets.warehouse import check_results
from moomarkets.warehouse import queries
from moomarkets.warehouse.datasets import DATASETS

router = new_router()


@router.get("/coverage", name="coverage_page", response_class=HTMLResponse)
async def coverage_page(
    request: Request,
    ident: Identity = Depends(page_identity),
    dataset: str | None = None,
    source: str | None = None,
    start: str | None = None,
    end: str | None = None,
    codes: str | None = None,
) -> HTMLResponse:
    options = await run_in_threadpool(call, queries.coverage_options)
    if not dataset and options:
        dataset, source = options[0]["dataset"], options[0]["source"]
    today = date.today()
    error = None
    try:
        end_d = date.fromisoformat(end) if end else today
        start_d = date.fromisoformat(start) if start else None
    except ValueError:
        end_d, start_d, error = today, None, "Dates must be YYYY-MM-DD."
    if start_d is None:
        start_d = (await run_in_threadpool(call, queries.default_range, dataset or "", source or "", end_d))[0]
    code_list = [c for c in (codes or "").replace(",", " ").split() if c]
    result = None
    if dataset and source and not error:
        try:
            result = await run_in_threadpool(call, queries.coverage, dataset, source, start_d, end_d, code_list or None)
        except ValueError as exc:
            error = str(exc)
    check_days = {}
    if result:  # days whose latest data check (per group and check) failed
        check_days = await run_in_threadpool(call, check_results.failed_days, source, dataset, start_d, end_d)
    return render(
        request, "coverage.html", ident, nav="coverage", options=options, datasets=sorted(DATASETS), result=result,
        error=error, form={"dataset": dataset or "", "source": source or "", "start": start_d.isoformat(),
                           "end": end_d.isoformat(), "codes": " ".join(code_list)},
        weeks=_weeks(result["days"]) if result else [], today=today, check_days=check_days,
    )


def _weeks(days: list[dict[str, Any]]) -> list[list[dict[str, Any] | None]]:
    """Days laid out as calendar weeks (Monday first) for the heat map: columns = weeks."""
    if not days:
        return []
    weeks: list[list[dict[str, Any] | None]] = []
    week: list[dict[str, Any] | None] = [None] * days[0]["date"].weekday()
    for d in days:
        week.append(d)
        if len(week) == 7:
            weeks.append(week)
            week = []
    if week:
        weeks.append(week + [None] * (7 - len(week)))
    return weeks
