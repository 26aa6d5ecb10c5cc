"""The Health page inside Airflow's real api-server app: behind the same login and read right as
every page, and showing the seeded warehouse: per-day chart bars, late and fresh groups, the failing
check. The chart geometry is checked on its own."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from health_seed import seed
from ui_helpers import PREFIX, bearer, section, token

from moomarkets.ui.pages.health import HEIGHT, chart

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_health_needs_a_login(client):
    for headers, cookies in (({}, {}), ({"Authorization": "Bearer not-a-jwt"}, {}),
                             ({}, {"_token": token("ADMIN", seconds=-120)})):
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        r = client.get(f"{PREFIX}/health", headers=headers, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/login?next=")
        assert "moomarkets%2Fhealth" in r.headers["location"]
    client.cookies.clear()


def test_viewer_sees_charts_freshness_and_failing_checks(client, warehouse_url):
    want = seed(warehouse_url)
    r = client.get(f"{PREFIX}/health", headers=bearer("VIEWER"))
    assert r.status_code == 200, r.text[:300]
    html = r.text
    assert 'class="on">Health</a>' in html  # in the navigation, highlighted

    charts = section(html, 'id="source-charts"', "</figure>")
    bars = re.findall(r'<rect class="requests"[^>]*data-day="([\d-]+)" data-requests="(\d+)" data-http-429="(\d+)"'
                      r'[^>]*data-wait-seconds="([\d.]+)"', charts)
    assert len(bars) == 7 and bars[0][0] == want["first_day"] and bars[-1][0] == want["today"]
    seen = {d: (int(n), int(h), float(w)) for d, n, h, w in bars if int(n)}
    assert seen == want["days"]
    assert charts.count('<rect class="http429"') == 1  # only today met 429s
    assert "65 requests" in charts and "3 × 429" in charts  # the week's totals: 40 + 25, 3 + 0
    assert 'aria-labelledby="chart-title-jquants' in charts

    rows = dict(re.findall(r'<tr data-group="(\w+)" data-late="(true|false)"', html))
    assert rows["hl_late"] == "true" and rows["hl_fresh"] == "false"
    late_row = section(html, '<tr data-group="hl_late"', "</tr>")
    assert 'badge bad late">late<' in late_row and want["late_day"] in late_row
    fresh_row = section(html, '<tr data-group="hl_fresh"', "</tr>")
    assert 'badge ok fresh">fresh<' in fresh_row and "late<" not in fresh_row

    checks = section(html, 'id="failing-checks"', "</table>")
    assert 'data-group="hl_late" data-check="completeness"' in checks and "7 of 120 issues missing" in checks
    assert "price_sanity" not in checks  # it passed


def test_chart_geometry():
    days = [{"day": date(2026, 11, 16) + timedelta(days=i), "requests": n, "http_429": h, "http_5xx": 0,
             "wait_seconds": w} for i, (n, h, w) in enumerate([(0, 0, 0.0), (50, 10, 30.0), (100, 0, 0.0)])]
    c = chart(days)
    assert c["y_max"] == 100 and c["wait_max"] == 50
    empty, half, full = c["bars"]
    assert empty["h"] == 0 and full["y"] == c["top"] and full["y"] + full["h"] == c["base"] == HEIGHT - 22
    assert half["h"] == pytest.approx(full["h"] / 2, abs=0.1) and half["h429"] == pytest.approx(full["h"] / 10, abs=0.1)
    assert half["y429"] + half["h429"] == pytest.approx(c["base"])  # the 429s sit at the bottom of their bar
    assert empty["x"] < half["x"] < full["x"] and c["wait_points"].count(",") == 3
