"""The local fake J-Quants v2 server and its synthetic data (the contract the client relies on)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from datetime import date, timedelta

import pytest
import requests

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx backend
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from moomarkets.testing import jquants_data as fd
from moomarkets.testing.jquants_fake import (
    BANNER,
    MSG_BAD_KEY,
    MSG_NEED_PARAM,
    FakeConfig,
    create_app,
    running_fake,
)

KEY = "fake-test-key"
H = {"x-api-key": KEY}
BARS = "/v2/equities/bars/daily"


@pytest.fixture
def app():
    return create_app(FakeConfig(api_key=KEY, page_size=10_000))


@pytest.fixture
def http(app):
    with TestClient(app) as c:
        yield c


def get(http, path, params=None, headers=H):
    return http.get(path, params=params or {}, headers=headers)


# -- calendar ---------------------------------------------------------------------------------
def test_2026_holidays():
    closed_weekdays = [date.fromisoformat(r["Date"]) for r in fd.calendar_rows("2026-01-01", "2026-12-31")
                       if r["HolDiv"] != "1" and date.fromisoformat(r["Date"]).weekday() < 5]
    assert closed_weekdays == [date(2026, m, d) for m, d in [
        (1, 1), (1, 2), (1, 12), (2, 11), (2, 23), (3, 20), (4, 29), (5, 4), (5, 5), (5, 6), (7, 20),
        (8, 11), (9, 21), (9, 22), (9, 23), (10, 12), (11, 3), (11, 23), (12, 31)]]


@pytest.mark.parametrize("day", ["2015-09-22", "2019-04-30", "2019-05-02", "2019-10-22", "2020-07-24",
                                 "2021-08-09", "2024-02-12", "2024-09-23", "2025-01-13", "2027-03-22"])
def test_special_holidays_are_closed(day):
    assert not fd.is_trading_day(day)


def test_hol_div_values():
    assert fd.hol_div("2026-11-20") == "1"
    assert fd.hol_div("2026-11-21") == "0"  # Saturday
    assert fd.hol_div("2026-12-31") == "0"  # exchange year end
    assert fd.hol_div("2026-11-23") == "3"  # weekday holiday, derivatives holiday trading
    assert fd.hol_div("2021-11-23") == "0"  # before holiday trading began


def test_trading_days_match_calendar():
    days = fd.trading_days("2026-01-01", "2026-12-31")
    assert 240 <= len(days) <= 250
    assert days == [date.fromisoformat(r["Date"]) for r in fd.calendar_rows("2026-01-01", "2026-12-31", "1")]
    assert fd.trading_days("20260103", "20260105") == [date(2026, 1, 5)]


def test_calendar_endpoint(http):
    r = get(http, "/v2/markets/calendar", {"from": "20261120", "to": "2026-11-24"})
    assert r.status_code == 200
    assert r.json() == {"data": [{"Date": "2026-11-20", "HolDiv": "1"}, {"Date": "2026-11-21", "HolDiv": "0"},
                                 {"Date": "2026-11-22", "HolDiv": "0"}, {"Date": "2026-11-23", "HolDiv": "3"},
                                 {"Date": "2026-11-24", "HolDiv": "1"}]}
    r = get(http, "/v2/markets/calendar", {"hol_div": "1", "from": "20261120", "to": "20261124"})
    assert [x["Date"] for x in r.json()["data"]] == ["2026-11-20", "2026-11-24"]


# -- contract: auth, errors, pagination --------------------------------------------------------
def test_bad_or_missing_key_is_403(http):
    for headers in ({"x-api-key": "nope"}, {}):
        r = get(http, BARS, {"date": "20260105"}, headers=headers)
        assert r.status_code == 403 and r.json() == {"message": MSG_BAD_KEY}


def test_missing_parameters_is_400_with_the_real_message(http):
    for path in (BARS, "/v2/fins/summary"):
        r = get(http, path, {"from": "20260105"})
        assert r.status_code == 400 and r.json() == {"message": MSG_NEED_PARAM}


def test_unknown_path_is_403_not_404(http):
    assert get(http, "/v2/prices/daily_quotes", {"date": "20260105"}).status_code == 403
    assert get(http, "/v1/prices/daily_quotes").status_code == 403


def test_pagination_keys_change_and_vanish_on_last_page():
    app = create_app(FakeConfig(api_key=KEY, page_size=10))
    with TestClient(app) as http:
        rows, keys, params = [], [], {"date": "2026-01-05"}
        while True:
            body = get(http, BARS, params).json()
            rows += body["data"]
            if "pagination_key" not in body:
                break
            keys.append(body["pagination_key"])
            params = {"date": "2026-01-05", "pagination_key": body["pagination_key"]}
        assert rows == fd.daily_bars_for_date(date(2026, 1, 5))
        assert len(keys) == len(set(keys)) == (len(rows) - 1) // 10
        # a key only works with the query it came from
        r = get(http, BARS, {"date": "2026-01-06", "pagination_key": keys[0]})
        assert r.status_code == 400
        assert app.state.fake.count("/equities/bars/daily") == len(keys) + 2


def test_gzip_when_asked(http):
    r = http.get(BARS, params={"date": "20260105"}, headers={**H, "Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert r.json()["data"] == fd.daily_bars_for_date("2026-01-05")


# -- daily bars ---------------------------------------------------------------------------------
def test_date_query_returns_every_listed_issue(http):
    body = get(http, BARS, {"date": "20260105"}).json()
    assert body == {"data": fd.daily_bars_for_date("2026-01-05")}
    rows = body["data"]
    assert len(rows) == 49  # 50 issues, 285A0 not listed yet
    assert all(tuple(r) == fd.BAR_FIELDS for r in rows)
    assert [r["Code"] for r in rows] == sorted(r["Code"] for r in rows)
    assert fd.ALNUM_CODE in {r["Code"] for r in rows}
    assert all(len(r["Code"]) == 5 for r in rows)


def test_non_trading_day_has_no_rows(http):
    for day in ("20260103", "2026-11-23", "20261231"):
        assert get(http, BARS, {"date": day}).json() == {"data": []}


def test_both_date_formats_and_four_char_codes(http):
    a = get(http, BARS, {"code": "7203", "from": "20260105", "to": "20260109"}).json()
    b = get(http, BARS, {"code": "72030", "from": "2026-01-05", "to": "2026-01-09"}).json()
    assert a == b == {"data": fd.daily_bars_for_code("72030", "2026-01-05", "2026-01-09")}
    assert [r["Date"] for r in a["data"]] == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08",
                                              "2026-01-09"]
    one = get(http, BARS, {"code": "72030", "date": "20260107"}).json()["data"]
    assert one == [a["data"][2]]
    assert get(http, BARS, {"code": "99999"}).json() == {"data": []}
    assert get(http, BARS, {"date": "2026/01/05"}).status_code == 400


def test_bars_are_consistent_and_deterministic():
    rows = [r for d in fd.trading_days("2025-06-01", "2025-08-31") for r in fd.daily_bars_for_date(d)]
    for r in rows:
        if r["O"] is None:
            assert r["Code"] == fd.ILLIQUID_CODE and r["Vo"] is None and r["AdjC"] is None
            continue
        assert r["H"] >= max(r["O"], r["C"]) and r["L"] <= min(r["O"], r["C"]) and r["L"] > 0
        assert r["Vo"] > 0 and r["Vo"] % 100 == 0 and r["Va"] > 0
        assert r["UL"] in ("0", "1") and r["LL"] in ("0", "1")
    assert any(r["O"] is None for r in rows)  # the illiquid issue has no-trade days
    assert fd.daily_bars_for_date("2015-01-05") and fd.daily_bars_for_date("2027-12-30")


def test_bars_are_a_function_of_the_arguments_only():
    """Recomputed with empty caches, and in another interpreter with another hash seed, the rows
    are the same: no clock, no global random state, no salted hash() behind them."""
    args = ("13010", "2017-03-01", "2017-03-10")
    first = fd.daily_bars_for_code(*args)
    assert len(first) == 8  # the business days of that range
    fd.clear_caches()
    assert fd._series.cache_info().currsize == 0
    assert fd.daily_bars_for_code(*args) == first
    script = ("import json, sys; from moomarkets.testing import jquants_data as fd; "
              "print(json.dumps(fd.daily_bars_for_code(*sys.argv[1:])))")
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == first


def test_split_adjustment_convention():
    rows = {r["Date"]: r for r in fd.daily_bars_for_code(fd.SPLIT_CODE, "2026-03-20", "2026-04-03")}
    split = fd.SPLIT_DATE.isoformat()
    before = [r for d, r in rows.items() if d < split]
    assert rows[split]["AdjFactor"] == 0.5
    assert all(r["AdjFactor"] == 1.0 for d, r in rows.items() if d != split)
    for r in before:
        for raw, adj in (("O", "AdjO"), ("H", "AdjH"), ("L", "AdjL"), ("C", "AdjC")):
            assert r[adj] == round(r[raw] * 0.5, 1)
        assert r["AdjVo"] == r["Vo"] * 2
    for d, r in rows.items():
        if d >= split:
            assert (r["AdjO"], r["AdjC"], r["AdjVo"]) == (r["O"], r["C"], r["Vo"])
    ratio = rows[split]["C"] / before[-1]["C"]
    assert 0.35 < ratio < 0.7  # the raw price halves on the effective date
    # as of a day before the split, history is not adjusted yet
    early = fd.daily_bars_for_code(fd.SPLIT_CODE, "2026-03-26", "2026-04-03", as_of=date(2026, 3, 27))
    assert [r["Date"] for r in early] == ["2026-03-26", "2026-03-27"]
    assert all(r["AdjC"] == r["C"] and r["AdjFactor"] == 1.0 for r in early)


def test_listings_and_delistings():
    def codes(day):
        return {r["Code"] for r in fd.daily_bars_for_date(day)}

    assert "285A0" not in codes("2026-03-17") and "285A0" in codes("2026-03-18")
    assert "39990" in codes("2026-02-27") and "39990" not in codes("2026-03-02")
    assert "39980" in codes("2026-09-29") and "39980" not in codes("2026-09-30")
    assert fd.ALNUM_CODE not in codes("2024-03-25") and fd.ALNUM_CODE in codes("2024-03-26")
    assert fd.daily_bars_for_code("39990", "2026-02-20")[-1]["Date"] == "2026-02-27"
    assert {i.code for i in fd.universe(8)} >= {fd.ALNUM_CODE, fd.SPLIT_CODE, "285A0", "39990", fd.ILLIQUID_CODE}
    assert len({i.code for i in fd.universe(120)}) == 120


def test_today_caps_the_data():
    app = create_app(FakeConfig(api_key=KEY, today=date(2026, 3, 27)))
    with TestClient(app) as http:
        assert get(http, BARS, {"date": "20260330"}).json() == {"data": []}
        rows = get(http, BARS, {"code": fd.SPLIT_CODE, "from": "20260301"}).json()["data"]
        assert rows[-1]["Date"] == "2026-03-27" and rows[-1]["AdjC"] == rows[-1]["C"]


# -- other endpoints --------------------------------------------------------------------------
def test_master(http):
    rows = get(http, "/v2/equities/master", {"date": "20260317"}).json()["data"]
    assert all(tuple(r) == fd.MASTER_FIELDS for r in rows)
    assert "285A0" not in {r["Code"] for r in rows} and "39980" in {r["Code"] for r in rows}
    assert {r["Date"] for r in rows} == {"2026-03-17"}
    one = get(http, "/v2/equities/master", {"code": "7203", "date": "20261123"}).json()["data"]
    assert len(one) == 1 and one[0]["Date"] == "2026-11-24" and one[0]["Mkt"] == "0111"


def test_fins_summary(http):
    rows = get(http, "/v2/fins/summary", {"code": "72030"}).json()["data"]
    fy2025 = [r for r in rows if r["CurFYSt"] == "2025-04-01"]
    assert {r["CurPerType"] for r in fy2025} == {"1Q", "2Q", "3Q", "FY"}
    assert len({r["DiscNo"] for r in rows}) == len(rows)
    assert all(r["DiscDate"] >= fd.DATA_START.isoformat() for r in rows)
    assert all(fd.is_trading_day(r["DiscDate"]) for r in rows)
    day = fy2025[0]["DiscDate"]
    by_date = get(http, "/v2/fins/summary", {"date": day.replace("-", "")}).json()["data"]
    assert by_date and {r["DiscDate"] for r in by_date} == {day}
    assert by_date == fd.fins_summary_rows(day=day)


def test_indices(http):
    rows = get(http, "/v2/indices/bars/daily", {"code": "0000", "from": "20260105", "to": "20260109"}).json()["data"]
    assert [tuple(r) for r in rows] == [("Date", "Code", "O", "H", "L", "C")] * 5
    topix = get(http, "/v2/indices/bars/daily/topix", {"from": "20260105", "to": "20260109"}).json()["data"]
    assert [{k: v for k, v in r.items() if k != "Code"} for r in rows] == topix
    # date alone: every served index for that day (TOPIX and TOPIX Core30), sorted by code
    by_date = get(http, "/v2/indices/bars/daily", {"date": "20260105"}).json()["data"]
    assert [r["Code"] for r in by_date] == ["0000", "0028"]
    assert by_date[0] == rows[0]
    core30 = get(http, "/v2/indices/bars/daily", {"code": "0028", "from": "20260105", "to": "20260109"}).json()["data"]
    assert [r["Date"] for r in core30] == [r["Date"] for r in rows] and by_date[1] == core30[0]
    assert [r["C"] for r in core30] != [r["C"] for r in rows]  # its own series, not a copy of TOPIX


def test_fins_summary_same_day_disclosures(http):
    rows = get(http, "/v2/fins/summary", {"code": fd.SAME_DAY_CODE}).json()["data"]
    by_day: dict[str, list] = {}
    for r in rows:
        by_day.setdefault(r["DiscDate"], []).append(r)
    pairs = {d: rs for d, rs in by_day.items() if len(rs) > 1}
    assert pairs  # results and a forecast revision published together
    for day, rs in pairs.items():
        assert {r["DocType"] for r in rs} == {"2QFinancialStatements_Consolidated_JP", "EarnForecastRevision"}
        assert len({r["DiscNo"] for r in rs}) == 2 and len({r["DiscTime"] for r in rs}) == 1
    day = min(pairs)
    assert [r["DiscNo"] for r in get(http, "/v2/fins/summary", {"date": day}).json()["data"]
            if r["Code"] == fd.SAME_DAY_CODE] == [r["DiscNo"] for r in pairs[day]]


# -- plan, rate limit, faults -----------------------------------------------------------------
def test_plan_coverage_is_403():
    app = create_app(FakeConfig(api_key=KEY, plan_endpoints={"/equities/bars/daily"},
                                plan_from=date(2025, 1, 1), plan_to=date(2026, 8, 31)))
    with TestClient(app) as http:
        r = get(http, "/v2/fins/summary", {"code": "72030"})
        assert r.status_code == 403 and "plan" in r.json()["message"]
        r = get(http, BARS, {"date": "20261120"})
        assert r.status_code == 403 and "subscription covers" in r.json()["message"]
        rows = get(http, BARS, {"code": "72030"}).json()["data"]  # no dates: clipped to the plan
        assert rows[0]["Date"] >= "2025-01-01" and rows[-1]["Date"] <= "2026-08-31"


def test_rate_limit_429_without_retry_after():
    app = create_app(FakeConfig(api_key=KEY, rate_limit_per_minute=3))
    state = app.state.fake
    now = [1000.0]
    state.clock = lambda: now[0]
    with TestClient(app) as http:
        statuses = [get(http, "/v2/markets/calendar", {"from": "20260105", "to": "20260105"}) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[-1].json() == {"message": "Rate limit exceeded"}
        assert "retry-after" not in statuses[-1].headers
        now[0] += 61
        assert get(http, "/v2/markets/calendar", {"from": "20260105", "to": "20260105"}).status_code == 200
    assert state.statuses == [200, 200, 200, 429, 200]


def test_fault_injection_and_reset(app, http):
    state = app.state.fake
    state.inject("429", 2)
    state.inject("503")
    state.inject("garbage")
    state.inject("truncated")
    state.inject("nodata")
    p = {"from": "20260105", "to": "20260105"}
    results = [get(http, "/v2/markets/calendar", p) for _ in range(7)]
    assert [r.status_code for r in results] == [429, 429, 503, 200, 200, 200, 200]
    assert "text/html" in results[3].headers["content-type"]
    with pytest.raises(ValueError):
        results[4].json()
    assert "data" not in results[5].json()
    assert results[6].json() == {"data": [{"Date": "2026-01-05", "HolDiv": "1"}]}
    assert state.count() == 7 and state.requests[0] == ("/markets/calendar", p)
    state.inject("loop_pagination", 2)
    a = get(http, BARS, {"date": "20260105"}).json()
    b = get(http, BARS, {"date": "20260105", "pagination_key": a["pagination_key"]}).json()
    assert a["pagination_key"] == b["pagination_key"]
    state.inject("500", 5)
    state.reset()
    assert state.count() == 0 and not state.faults
    assert get(http, "/v2/markets/calendar", p).status_code == 200
    with pytest.raises(ValueError):
        state.inject("explode")


def test_faults_from_config():
    app = create_app(FakeConfig(api_key=KEY, faults=[("500", 2), ("slow", 0.01)]))
    with TestClient(app) as http:
        codes = [get(http, "/v2/markets/calendar", {"from": "20260105", "to": "20260105"}).status_code
                 for _ in range(4)]
    assert codes == [500, 500, 200, 200]


# -- running it -------------------------------------------------------------------------------
def test_running_fake_serves_and_stops():
    with running_fake(FakeConfig(api_key=KEY)) as (url, state):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v2")
        r = requests.get(url + "/markets/calendar", params={"from": "20260105", "to": "20260105"}, headers=H,
                         timeout=5)
        assert r.json() == {"data": [{"Date": "2026-01-05", "HolDiv": "1"}]} and state.count() == 1
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/markets/calendar", headers=H, timeout=2)


def test_command_line_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moomarkets.testing.jquants_fake", "--port", str(port), "--api-key", "cli-key",
         "--page-size", "5", "--today", "2026-11-20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout.readline().strip() == BANNER
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v2/equities/bars/daily", params={"date": "20261120"},
                                 headers={"x-api-key": "cli-key"}, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        body = r.json()
        assert len(body["data"]) == 5 and "pagination_key" in body
        assert requests.get(f"http://127.0.0.1:{port}/docs", timeout=2).status_code == 200
        late = (date(2026, 11, 20) + timedelta(days=4)).strftime("%Y%m%d")
        assert requests.get(f"http://127.0.0.1:{port}/v2/equities/bars/daily", params={"date": late},
                            headers={"x-api-key": "cli-key"}, timeout=2).json() == {"data": []}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
