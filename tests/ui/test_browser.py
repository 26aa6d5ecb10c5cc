"""The management pages in a real browser (Debian's chromium driven by Playwright) against a real
Airflow api-server and dag-processor: log in through Airflow's own login page, open MooMarkets
from Airflow's navigation, create a job group through the form (first rejected with a field
error), see its DAG appear in Airflow, disable it and see the DAG paused, open coverage.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import date, timedelta

import psycopg
import pytest
import yaml

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

GROUP = "ui_browser_quotes"
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 60/minute, max_concurrency: 2}}
"""


@pytest.fixture(scope="module")
def stack(airflow_stack):
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    with connect(airflow_stack.warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    # a few weeks of quotes with one missing business day, for the coverage picture
    today = date.today()
    business = [d for d in (today - timedelta(days=i) for i in range(1, 36)) if d.weekday() < 5]
    missing = business[9]
    with psycopg.connect(airflow_stack.warehouse_url) as conn:
        with conn.cursor().copy("COPY daily_quotes (source, code, date, close) FROM STDIN") as copy:
            for d in business:
                if d == missing:
                    continue
                for code in ("13010", "72030", "67580", "99840"):
                    copy.write_row(("jquants", code, d, 100))
    airflow_stack.missing_day = missing
    return airflow_stack


def missing_day(stack) -> str:
    return stack.missing_day.isoformat()


def login(page, stack, user: str = "admin") -> None:
    page.goto(f"{stack.base_url}/")
    page.wait_for_url(re.compile(r".*/auth/login.*"), timeout=30_000)
    page.get_by_label(re.compile("username", re.I)).fill(user)
    page.get_by_label(re.compile("password", re.I)).fill(stack.users[user])
    page.get_by_role("button", name=re.compile("sign in|log ?in", re.I)).click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)


def test_anonymous_browser_is_sent_to_airflows_login(stack, browser, shot):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.base_url}/moomarkets/groups")
    page.wait_for_url(re.compile(r".*/auth/login\?next=.*moomarkets.*"), timeout=30_000)
    shot(page, "login-redirect")
    r = context.request.get(f"{stack.base_url}/moomarkets/api/groups")
    assert r.status == 401
    context.close()


def test_manage_a_group_from_airflows_navigation(stack, browser, shot):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, stack)
    shot(page, "airflow-home")

    # MooMarkets is in Airflow's own navigation and opens inside Airflow (iframe)
    page.get_by_role("link", name="MooMarkets").first.click()
    page.wait_for_url(re.compile(r".*/plugin/moomarkets"), timeout=30_000)
    frame = page.frame_locator("iframe").first
    frame.get_by_role("heading", name="Job groups").wait_for(timeout=30_000)
    shot(page, "plugin-groups-empty")

    # create a group through the form: first with a bad schedule (field error), then fixed
    frame.locator("#new-group").click()
    frame.locator("#name").fill(GROUP)
    frame.locator("#description").fill("Created by the browser test")
    frame.locator("#data_source").select_option("jquants")
    frame.locator("#dataset").fill("daily_quotes")
    frame.locator("#schedule").fill("0 19 * * Funday")
    frame.locator("#timezone").fill("Asia/Tokyo")
    frame.locator("#parameters").fill('{"tickers": ["72030", "67580"]}')
    frame.locator("#save-group").click()
    error = frame.locator("#error-schedule")
    error.wait_for(timeout=15_000)
    assert "cron" in error.inner_text()
    assert frame.locator("#name").input_value() == GROUP  # input kept
    shot(page, "group-form-field-error")
    frame.locator("#schedule").fill("0 19 * * 1-5")
    frame.locator("#save-group").click()
    frame.get_by_text(f"Created job group {GROUP}.").wait_for(timeout=15_000)
    shot(page, "group-created")

    # its DAG appears in Airflow (the dag-processor parses the group from the table)
    def dag_listed():
        r = context.request.get(f"{stack.base_url}/api/v2/dags/{GROUP}")
        return r.status == 200 and r.json()
    dag = stack.wait_for(dag_listed, 90, f"DAG {GROUP} to be parsed", interval=2)
    assert dag["is_paused"] is False
    page.goto(f"{stack.base_url}/dags")
    page.get_by_text(GROUP).first.wait_for(timeout=30_000)
    shot(page, "airflow-dag-list-with-new-dag")

    # disable the group in MooMarkets: Airflow's DAG is paused
    page.goto(f"{stack.base_url}/plugin/moomarkets")
    frame = page.frame_locator("iframe").first
    frame.get_by_role("link", name=GROUP).click()
    frame.locator("#dag-state").filter(has_text="DAG active").wait_for(timeout=15_000)
    frame.locator("#run-now").click()
    frame.get_by_text(re.compile(r"Queued run manual__")).wait_for(timeout=15_000)
    runs = context.request.get(f"{stack.base_url}/api/v2/dags/{GROUP}/dagRuns").json()
    assert [r["run_type"] for r in runs["dag_runs"]] == ["manual"]
    frame.locator("#disable-group").click()
    frame.get_by_text(f"Disabled job group {GROUP}").wait_for(timeout=15_000)
    assert "DAG paused" in frame.locator("#dag-state").inner_text()
    shot(page, "group-disabled")
    r = context.request.get(f"{stack.base_url}/api/v2/dags/{GROUP}")
    assert r.json()["is_paused"] is True
    page.goto(f"{stack.base_url}/dags?paused=true")
    page.get_by_text(GROUP).first.wait_for(timeout=30_000)
    shot(page, "airflow-dag-list-paused")

    # coverage of the dataset: the missing business day is a gap
    page.goto(f"{stack.base_url}/plugin/moomarkets")
    frame = page.frame_locator("iframe").first
    frame.get_by_role("link", name="Coverage").click()
    frame.locator("#heatmap").wait_for(timeout=15_000)
    summary = frame.locator("#coverage-summary").inner_text()
    assert re.search(r"(?<!\d)1 gap day\(s\)", summary), summary
    assert frame.locator("#heatmap .cell.gap").count() == 1
    assert frame.locator(f"#heatmap .cell.gap[title^=\"{missing_day(stack)}\"]").count() == 1
    shot(page, "coverage")

    # the sources page never shows the connection's key
    frame.get_by_role("link", name="Data sources").click()
    frame.locator("td.cred .badge").first.wait_for(timeout=20_000)
    assert "browser-test-secret-key" not in frame.locator("body").inner_html()
    shot(page, "sources")
    context.close()
