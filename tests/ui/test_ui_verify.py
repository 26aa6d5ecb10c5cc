"""The group page's Verify button: a sampled, read-only verify of a recent range against the local
J-Quants fake (through the source's Connection), shown as a flash message and recorded; it needs
the CSRF token and the right to run the group, like Backfill."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest
from ui_helpers import PREFIX, csrf_from, token

pytestmark = pytest.mark.integration

KEY = "ui-verify-key-1414"


@pytest.fixture
def fake_conn(monkeypatch):
    from moomarkets.services import verify
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    # a fixed week instead of "the last 7 days" (Mon 16 .. Sun 22 Nov 2026: five trading days)
    monkeypatch.setattr(verify, "page_range", lambda tz, today=None: (date(2026, 11, 16), date(2026, 11, 22)))
    with running_fake(FakeConfig(api_key=KEY, page_size=500)) as (base_url, state):
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": KEY}))
        yield state


def test_verify_button_reports_the_differences_of_a_sample(client, warehouse_url, fake_conn):
    client.cookies.set("_token", token("USER"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200 and 'id="verify-group"' in page.text
    csrf = csrf_from(page.text)

    r = client.post(f"{PREFIX}/groups/ui_api_quotes/verify", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/ui_api_quotes"
    shown = client.get(r.headers["location"]).text
    # nothing was loaded: the sampled days are all missing, and the page says how to repair
    assert "Verify of ui_api_quotes 2026-11-16..2026-11-22: 2 of 5 unit(s) (sample, seed" in shown
    assert "found differences (missing " in shown and "--repair" in shown
    assert fake_conn.count() == 2  # one request per sampled day (one page each)
    with psycopg.connect(warehouse_url) as conn:
        rec = conn.execute("SELECT via, sample, repair, status, units, requests, repaired FROM verifications").fetchall()
        rows = conn.execute("SELECT count(*) FROM daily_quotes").fetchone()[0]
    assert rec == [("ui", 2, False, "different", 2, 2, 0)] and rows == 0  # read-only
    client.cookies.clear()


def test_verify_needs_csrf_and_the_right_to_run(client, fake_conn):
    client.cookies.set("_token", token("VIEWER"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200 and 'id="verify-group"' not in page.text
    r = client.post(f"{PREFIX}/groups/ui_api_quotes/verify", data={"csrf_token": csrf_from(page.text)},
                    follow_redirects=False)
    assert r.status_code == 403
    client.cookies.set("_token", token("USER"))
    r = client.post(f"{PREFIX}/groups/ui_api_quotes/verify", data={}, follow_redirects=False)
    assert r.status_code in (400, 403)
    assert fake_conn.count() == 0
    client.cookies.clear()
