"""The Health page in a real browser (Debian's chromium via Playwright) against a real Airflow
api-server: log in through Airflow's login page, open MooMarkets from Airflow's navigation, follow
its Health link; the chart bars carry the seeded per-day values, the late group has a late badge
and the fresh one not, the failing check is listed. Screenshot: artifacts/health.png."""

from __future__ import annotations

import re

import pytest
from health_seed import seed
from test_browser import login

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]


def test_health_page(airflow_stack, browser, shot):
    want = seed(airflow_stack.warehouse_url)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()

    # anonymous: sent to Airflow's login, like every page
    page.goto(f"{airflow_stack.base_url}/moomarkets/health")
    page.wait_for_url(re.compile(r".*/auth/login\?next=.*moomarkets.*health.*"), timeout=30_000)

    login(page, airflow_stack)
    page.goto(f"{airflow_stack.base_url}/plugin/moomarkets")
    frame = page.frame_locator("iframe").first
    frame.get_by_role("link", name="Health").click()
    frame.get_by_role("heading", name="Health", exact=True).wait_for(timeout=30_000)

    bars = frame.locator('#source-charts figure[data-source="jquants"] svg rect.requests')
    assert bars.count() == 7
    got = {}
    for i in range(7):
        bar = bars.nth(i)
        day, requests = bar.get_attribute("data-day"), int(bar.get_attribute("data-requests"))
        if requests:
            got[day] = (requests, int(bar.get_attribute("data-http-429")),
                        float(bar.get_attribute("data-wait-seconds")))
            assert float(bar.get_attribute("height")) > 0
    assert got == want["days"]
    overlay = frame.locator("#source-charts rect.http429")
    assert overlay.count() == 1 and overlay.get_attribute("data-day") == want["today"]
    assert frame.get_by_role("img", name=re.compile(r"^J-Quants: requests, 429 answers")).count() == 1  # labelled

    late = frame.locator('#freshness tr[data-group="hl_late"]')
    assert late.locator(".badge.late").inner_text() == "late"
    assert late.locator(".last-complete").inner_text() == want["late_day"]
    fresh = frame.locator('#freshness tr[data-group="hl_fresh"]')
    assert fresh.locator(".badge.late").count() == 0 and fresh.locator(".badge.fresh").inner_text() == "fresh"

    failing = frame.locator('#failing-checks tr[data-group="hl_late"][data-check="completeness"]')
    assert "7 of 120 issues missing" in failing.inner_text()
    shot(page, "health-in-airflow")

    # the page on its own, full length, for the record
    page.goto(f"{airflow_stack.base_url}/moomarkets/health")
    page.locator("#freshness").wait_for(timeout=15_000)
    artifacts = shot(page, "health").parent.parent
    page.screenshot(path=str(artifacts / "health.png"), full_page=True)
    context.close()
