"""The Health page: per source, requests, 429s and rate-limit waits over the last 7 days (inline
SVG charts, drawn here: the UI runs offline, so no chart library or CDN); per group, freshness
with a late badge; the checks failing now. Only what the user may read (Airflow's per-DAG read
rights, as the groups list): see ``services.health.health_view``."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from moomarkets.services import health
from moomarkets.ui.auth import Identity, is_allowed, page_identity
from moomarkets.ui.pages.common import call, new_router, render
from moomarkets.warehouse import config_store

router = new_router()

# Chart geometry (SVG user units): plot area below a top margin, above the day labels.
WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 420, 150, 14, 22, 36
BAR_GAP = 0.25  # share of a day's slot left empty between bars


@router.get("/health", name="health_page", response_class=HTMLResponse)
async def health_page(request: Request, ident: Identity = Depends(page_identity)) -> HTMLResponse:
    # per-DAG read rights, as the groups list: only readable groups and their failing checks; a
    # source's chart (all its groups' requests: the rate limit is per source) only to a user who may
    # read at least one of the source's groups, or every group (then also sources without groups).
    # Asked here, as groups_page does: the auth manager is not called from a worker thread.
    names = await run_in_threadpool(call, lambda conn: [g.name for g in config_store.list_groups(conn)])
    readable = {name for name in names if is_allowed(ident, "read", name)}
    can_read_all = readable == set(names)
    view = await run_in_threadpool(
        call, lambda conn: health.health_view(conn, can_read=readable.__contains__, can_read_all=can_read_all))
    for src in view["sources"]:
        src["chart"] = chart(src["days"])
    return render(request, "health.html", ident, nav="health", **view)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n), at least 1."""
    step = 1.0
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Bar geometry for one source: a bar of requests per day with its 429s overlaid from the
    bottom (both on the requests axis) and the seconds waited as a line on its own axis."""
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(1, len(days))
    y_max = _nice_max(max((d["requests"] for d in days), default=0))
    wait_max = _nice_max(max((d["wait_seconds"] for d in days), default=0.0))
    bars, points = [], []
    for i, d in enumerate(days):
        x = LEFT + i * slot + slot * BAR_GAP / 2
        w = slot * (1 - BAR_GAP)
        h = plot_h * d["requests"] / y_max
        h429 = plot_h * d["http_429"] / y_max
        base = TOP + plot_h
        bars.append({**d, "x": round(x, 1), "w": round(w, 1), "y": round(base - h, 1), "h": round(h, 1),
                     "y429": round(base - h429, 1), "h429": round(h429, 1), "label_x": round(x + w / 2, 1),
                     "label": d["day"].strftime("%a %d")})
        points.append(f"{x + w / 2:.1f},{base - plot_h * d['wait_seconds'] / wait_max:.1f}")
    return {"width": WIDTH, "height": HEIGHT, "top": TOP, "left": LEFT, "base": HEIGHT - BOTTOM, "y_max": y_max,
            "wait_max": wait_max, "bars": bars, "wait_points": " ".join(points)}
