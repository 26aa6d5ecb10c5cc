"""The official J-Quants client (``jquants-api-client``, written by JPX's team, pinned in
requirements-dev.txt) parses what the fake serves, for every endpoint the product uses.

The client is the independent oracle of the v2 contract: it selects its column lists
(``jquantsapi.constants.*_COLUMNS_V2``) from each response, so a field the fake does not serve
fails here with a KeyError, as it would have for a real user. Its base URL is a class attribute
(``ClientV2.JQUANTS_API_BASE``); its retry adapter is mounted for https only, which is fine for
the local http fake.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

jquantsapi = pytest.importorskip("jquantsapi")
from jquantsapi import constants as C  # noqa: E402

from moomarkets.testing import jquants_data as fd  # noqa: E402
from moomarkets.testing.jquants_fake import FakeConfig, running_fake  # noqa: E402

KEY = "official-client-key"
DAY = "2026-11-16"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    with running_fake(FakeConfig(api_key=KEY, page_size=200)) as (url, state):
        mp = pytest.MonkeyPatch()
        mp.setattr(jquantsapi.ClientV2, "JQUANTS_API_BASE", url)
        mp.chdir(tmp_path_factory.mktemp("jq"))  # no jquants-api.toml of the developer's is read
        mp.delenv("JQUANTS_API_CLIENT_CONFIG_FILE", raising=False)
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        try:
            client = jquantsapi.ClientV2(api_key=KEY)
            client.state = state
            yield client
        finally:
            mp.undo()


def _dates(df: pd.DataFrame, *cols: str) -> None:
    for c in cols:
        assert pd.api.types.is_datetime64_any_dtype(df[c]), c


def test_the_client_really_talks_to_the_fake(cli):
    n = cli.state.count()
    cli.get_mkt_calendar(from_yyyymmdd="20261116", to_yyyymmdd="20261116")
    assert cli.state.count() == n + 1 and cli.state.statuses[-1] == 200
    assert cli.state.headers[-1]["user-agent"].startswith("jqapi-python-v2/")


def test_equities_bars_daily(cli):
    by_date = cli.get_eq_bars_daily(date_yyyymmdd=DAY.replace("-", ""))
    served = fd.daily_bars_for_date(DAY)
    assert len(by_date) == len(served) > 1  # several pages
    assert list(by_date.columns) == list(fd.BAR_FIELDS)
    assert set(C.EQ_BARS_DAILY_COLUMNS_V2) <= set(by_date.columns)
    _dates(by_date, "Date")
    for col in ("O", "C", "AdjC", "MO", "AC", "Vo", "MVo", "AVo"):
        assert pd.api.types.is_float_dtype(by_date[col]), col
    assert (by_date["MVo"] + by_date["AVo"] == by_date["Vo"]).all()

    by_code = cli.get_eq_bars_daily(code="7203", from_yyyymmdd="20261101", to_yyyymmdd="20261130")
    assert len(by_code) == len(fd.daily_bars_for_code("72030", "2026-11-01", "2026-11-30"))
    assert set(by_code["Code"]) == {"72030"} and by_code["Date"].is_monotonic_increasing

    illiquid = cli.get_eq_bars_daily(code=fd.ILLIQUID_CODE, from_yyyymmdd="20260101", to_yyyymmdd="20260331")
    assert illiquid["O"].isna().any() and illiquid["MO"].isna().any()  # no-trade days parse as NaN


def test_equities_master(cli):
    df = cli.get_eq_master(date=DAY.replace("-", ""))
    assert list(df.columns) == C.EQ_MASTER_COLUMNS_V2
    assert len(df) == len(fd.master_rows(DAY)) > 1
    _dates(df, "Date")
    assert df["Code"].is_monotonic_increasing
    cats = dict(zip(df["Code"], df["ProdCat"]))
    assert cats[fd.ETF_CODE] == "014" and cats["72030"] == "011"
    assert set(cats.values()) <= set(fd.PRODUCT_CATEGORIES)
    one = cli.get_eq_master(code="1306", date=DAY)
    assert list(one["Code"]) == [fd.ETF_CODE] and list(one["ProdCat"]) == ["014"]


def test_fins_summary(cli):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # get_fin_summary is deprecated, still served
        by_code = cli.get_fin_summary(code="72030")
        day = by_code["DiscDate"].iloc[-1].date().isoformat()
        by_date = cli.get_fin_summary(date_yyyymmdd=day.replace("-", ""))
    assert len(C.FIN_SUMMARY_COLUMNS_V2) == len(fd.FIN_SUMMARY_FIELDS) == 111
    assert list(fd.FIN_SUMMARY_FIELDS) == C.FIN_SUMMARY_COLUMNS_V2
    for df in (by_code, by_date):
        assert list(df.columns) == C.FIN_SUMMARY_COLUMNS_V2 and len(df) > 0
        _dates(df, "DiscDate", "CurPerSt", "CurPerEn", "CurFYSt", "CurFYEn", "NxtFYSt", "NxtFYEn")
        assert df["Sales"].map(type).eq(str).all()  # numbers stay strings, as the API sends them
    assert len(by_code) == len(fd.fins_summary_rows(code="72030"))
    assert len(by_date) == len(fd.fins_summary_rows(day=day))
    fy = by_code[by_code["DocType"] == "FYFinancialStatements_Consolidated_JP"].iloc[-1]
    for col in ("Sales", "DivAnn", "NxFSales", "NxFNp", "NCSales", "ShEq", "ROE"):
        assert fy[col] != "" and float(fy[col]) == float(fy[col]), col
    assert fy["NxtFYSt"] > fy["CurFYSt"]
    assert cli.get_fin_summary(code=fd.ETF_CODE).empty  # funds publish no earnings summaries


def test_markets_calendar(cli):
    df = cli.get_mkt_calendar(from_yyyymmdd="20261101", to_yyyymmdd="20261130")
    assert list(df.columns) == C.MARKETS_TRADING_CALENDAR_COLUMNS_V2 and len(df) == 30
    _dates(df, "Date")
    assert set(df["HolDiv"]) <= {"0", "1", "2", "3"}
    holidays = cli.get_mkt_calendar(holiday_division="3", from_yyyymmdd="20261101", to_yyyymmdd="20261130")
    assert list(holidays["Date"].dt.strftime("%Y-%m-%d")) == ["2026-11-03", "2026-11-23"]


def test_indices_bars_daily(cli):
    df = cli.get_idx_bars_daily(code="0028", from_yyyymmdd="20261101", to_yyyymmdd="20261130")
    assert list(df.columns) == C.INDICES_COLUMNS_V2 and len(df) == len(fd.index_bars("0028", "2026-11-01", "2026-11-30"))
    _dates(df, "Date")
    assert all(pd.api.types.is_float_dtype(df[c]) for c in ("O", "H", "L", "C"))
    one_day = cli.get_idx_bars_daily(date_yyyymmdd=DAY.replace("-", ""))
    assert sorted(one_day["Code"]) == sorted(fd.INDICES)

    topix = cli.get_idx_bars_daily_topix(from_yyyymmdd="20261101", to_yyyymmdd="20261130")
    assert list(topix.columns) == C.INDICES_TOPIX_COLUMNS_V2 and len(topix) == len(df)
    _dates(topix, "Date")
