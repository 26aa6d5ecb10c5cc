"""The Health page inside Airflow's real api-server app: behind the same login and read right as
every page, and showing the seeded warehouse: per-day chart bars, late and fresh groups, the failing
check. The chart geometry is checked on its own."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from health_seed import only_reads, seed
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


def test_a_user_sees_only_the_groups_they_may_read(client, warehouse_url, monkeypatch):
    """Read rights on hl_fresh only: its freshness row, none of hl_late's (row, failing check); the
    J-Quants chart (hl_fresh is one of its groups: the chart sums the source's groups, hl_late's
    requests included); no chart of a source none of whose groups the user may read."""
    import yaml

    from moomarkets.warehouse import config_store
    from moomarkets.warehouse.db import connect

    seed(warehouse_url)
    with connect(warehouse_url) as conn:
        config_store.import_config(conn, yaml.safe_load("""
data_sources:
  - {code: yahoo, name: Yahoo Finance, kind: yfinance, conn_id: yfinance_default, is_active: true}
job_groups:
  - {name: hl_us, data_source: yahoo, dataset: daily_quotes, schedule: "30 17 * * 1-5",
     timezone: America/New_York, parameters: {tickers: [AAPL]}, is_enabled: true}
"""))
    admin = client.get(f"{PREFIX}/health", headers=bearer("ADMIN")).text  # all of it, for contrast
    assert 'data-source="yahoo"' in admin and 'data-group="hl_us"' in admin and 'id="failing-checks"' in admin

    only_reads(monkeypatch, "hl_fresh")
    r = client.get(f"{PREFIX}/health", headers=bearer("ADMIN"))
    assert r.status_code == 200, r.text[:300]
    html = r.text
    assert re.findall(r'<tr data-group="(\w+)"', html) == ["hl_fresh"]
    assert "hl_late" not in html and "hl_us" not in html and "ui_api_quotes" not in html
    assert 'id="failing-checks"' not in html and 'id="no-failing-checks"' in html  # hl_late's is not shown
    charts = section(html, 'id="source-charts"', "<h2>")
    assert re.findall(r'<figure class="chart" data-source="(\w+)"', charts) == ["jquants"]
    assert "65 requests" in charts  # the source's whole week, every group's units

    only_reads(monkeypatch, "nothing_here")
    html = client.get(f"{PREFIX}/health", headers=bearer("ADMIN")).text
    assert "<figure" not in html and "<tr data-group" not in html and "hl_late" not in html
    assert "none with a job group you may read" in html and "none you may read" in html


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
