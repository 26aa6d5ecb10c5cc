"""Server-rendered pages: job groups, data sources, coverage, health.

Every route depends on ``page_reader`` (login + DAG read access, else a redirect to Airflow's
login). Forms POST with a CSRF token and answer with a 303 redirect (post/redirect/get); a
rejected form is rendered again with the message next to the field it concerns.
"""

from __future__ import annotations

from fastapi import APIRouter

from moomarkets.ui.pages import coverage, groups, health, sources
from moomarkets.ui.pages.common import is_page, render_error

router = APIRouter()
for _module in (groups, sources, coverage, health):
    router.include_router(_module.router)

__all__ = ["router", "is_page", "render_error"]
