"""Deterministic SYNTHETIC market data served by the local fake J-Quants v2 server.

Pure functions, no I/O: tests and the lead's code call them to know exactly what the fake serves.
Everything is a function of its arguments only (no clock, no global random state), so two
processes always agree.

What is in it
-------------
- **Calendar** (2015-01-01 .. 2027-12-31, built in :mod:`moomarkets.testing.jpx_calendar`): TSE
  closes on weekends, Japanese national holidays and Dec 31 - Jan 3; ``HolDiv`` per /en/spec/mkt-cal.
- **Universe** (``n_issues``, default 50): 5-character codes. The first entries are the special
  cases, so even a small universe has them: ``72030``, ``13010``, ``130A0`` (alphanumeric,
  listed 2024-03-26), ``80350`` (1:2 split effective :data:`SPLIT_DATE`), ``285A0`` (listed
  2026-03-18), ``39990`` (delisted, last trading day 2026-02-27), ``39980`` (delisted, last trading
  day 2026-09-29), ``19990`` (illiquid: some business days have no trade, so O/H/L/C/Vo/Va are
  null as the spec of /en/spec/eq-bars-daily says).
  ``13060`` (:data:`ETF_CODE`) is an ETF (``ProdCat`` 014, market 0109, no earnings summaries);
  every other issue is ``ProdCat`` 011 (domestic stock).
- **Fields**: every field of each endpoint (v2 spec pages, official client's column lists), named
  and built in :mod:`moomarkets.testing.jquants_fields`.
- **Daily bars** (/en/spec/eq-bars-daily fields): a random walk seeded per code (sha256 of the
  code), computed once per code over every business day of the calendar and cached, so any date
  2015-2027 is cheap. Raw prices are whole yen, volumes multiples of 100.
- **Adjustment convention** (as J-Quants documents it): ``AdjFactor`` is 1.0 except on the
  split's effective date, where it is 0.5 for a 1:2 split. Rows dated *before* a split have
  ``Adj{O,H,L,C} = raw * 0.5`` (one decimal) and ``AdjVo = raw Vo / 0.5``; rows on or after it have
  ``Adj* == raw``. Splits dated after ``as_of`` are not applied yet (``as_of=None``: all are).
- **Master** (/en/spec/eq-master), **financial summaries** (/en/spec/fin-summary: four
  disclosures per fiscal year per issue plus occasional forecast revisions). Some issues (always
  :data:`SAME_DAY_CODE`) publish a full-year forecast revision on the same date and time as their
  2Q results, told apart only by ``DiscNo``. **Index bars** (/en/spec/idx-bars-daily): TOPIX
  ``0000`` and TOPIX Core30 ``0028``.

None of this is real market data: names of well known issues are used for the first few codes
only to make the synthetic universe look familiar.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from moomarkets.testing.jquants_fields import (  # noqa: F401 - re-exported: the fields served
    BAR_FIELDS,
    FIN_SUMMARY_FIELDS,
    MASTER_FIELDS,
    PRODUCT_CATEGORIES,
    revision_row,
    session_fields,
    summary_row,
)
from moomarkets.testing.jpx_calendar import (  # noqa: F401 - re-exported: what the fake serves
    DATA_END,
    DATA_START,
    HOLIDAY_TRADING_START,
    _all_trading_days,
    calendar_rows,
    hol_div,
    is_trading_day,
    jp_national_holidays,
    next_trading_day,
    to_date,
    trading_days,
)

DEFAULT_N_ISSUES = 50

ALNUM_CODE = "130A0"
SPLIT_CODE = "80350"
SPLIT_DATE = date(2026, 3, 30)  # effective (ex) date of the 1:2 split; a Monday business day
SPLIT_FACTOR = 0.5
ILLIQUID_CODE = "19990"
SAME_DAY_CODE = "72030"  # every fiscal year: 2Q results and a forecast revision on the same date

ETF_CODE = "13060"  # ProdCat 014 (ETF); every other issue is 011 (domestic stock)


def _h(*parts: Any) -> int:
    """Stable 64-bit hash of the parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def clear_caches() -> None:
    """Forget every memoized series and calendar, so the next call computes afresh.

    Tests use it to check that the data is a function of the arguments only, not of the cache.
    """
    for cached in (jp_national_holidays, _all_trading_days, universe, _year_levels, _series, _fins_for_issue,
                   _index_series):
        cached.cache_clear()


# --------------------------------------------------------------------------------------------
# Universe
# --------------------------------------------------------------------------------------------
SECTORS = [  # (S17, S17Nm, S33, S33Nm)
    ("6", "自動車・輸送機", "3700", "輸送用機器"),
    ("1", "食品", "0050", "水産・農林業"),
    ("10", "情報通信・サービスその他", "5250", "情報･通信業"),
    ("9", "電機・精密", "3650", "電気機器"),
    ("15", "銀行", "7050", "銀行業"),
    ("13", "商社・卸売", "6050", "卸売業"),
    ("5", "医薬品", "3250", "医薬品"),
    ("4", "素材・化学", "3200", "化学"),
    ("8", "機械", "3600", "機械"),
    ("14", "小売", "6100", "小売業"),
    ("17", "不動産", "8050", "不動産業"),
    ("12", "運輸・物流", "5050", "陸運業"),
    ("10", "情報通信・サービスその他", "9050", "サービス業"),
    ("3", "建設・資材", "2050", "建設業"),
]
MARKETS = {"0111": "プライム", "0112": "スタンダード", "0113": "グロース", "0109": "その他"}
ETF_SECTOR = ("99", "その他", "9999", "その他")  # what the master shows for ETFs
MARGIN = {"1": "信用", "2": "貸借"}


@dataclass(frozen=True)
class Issue:
    code: str
    name: str
    name_en: str
    sector: int  # index into SECTORS
    market: str  # "0111" / "0112" / "0113"
    scale: str
    listed: date  # first trading day
    delisted: date | None = None  # last trading day
    base_price: float = 1000.0
    volatility: float = 0.015
    base_volume: int = 100_000
    product: str = "011"  # ProdCat (/en/spec/eq-master/product-category)


_SPECIAL = [
    Issue("72030", "トヨタ自動車", "TOYOTA MOTOR CORPORATION", 0, "0111", "TOPIX Core30", DATA_START,
          base_price=2400, volatility=0.014, base_volume=20_000_000),
    Issue("13010", "極洋", "KYOKUYO CO.,LTD.", 1, "0111", "TOPIX Small 1", DATA_START,
          base_price=3300, volatility=0.012, base_volume=30_000),
    Issue(ALNUM_CODE, "合成アルファ", "SYNTHETIC ALPHA INC.", 2, "0113", "-", date(2024, 3, 26),
          base_price=1800, volatility=0.03, base_volume=400_000),
    Issue(SPLIT_CODE, "東京エレクトロン", "Tokyo Electron Limited", 3, "0111", "TOPIX Core30", DATA_START,
          base_price=12000, volatility=0.022, base_volume=3_000_000),
    Issue("285A0", "合成ベータ", "SYNTHETIC BETA CO.,LTD.", 2, "0113", "-", date(2026, 3, 18),
          base_price=900, volatility=0.035, base_volume=800_000),
    Issue("39990", "合成ガンマ", "SYNTHETIC GAMMA CORP.", 9, "0112", "TOPIX Small 2", DATA_START,
          delisted=date(2026, 2, 27), base_price=450, volatility=0.02, base_volume=50_000),
    Issue("39980", "合成デルタ", "SYNTHETIC DELTA CORP.", 10, "0112", "TOPIX Small 2", DATA_START,
          delisted=date(2026, 9, 29), base_price=700, volatility=0.018, base_volume=60_000),
    Issue(ILLIQUID_CODE, "合成イプシロン", "SYNTHETIC EPSILON LTD.", 13, "0112", "-", DATA_START,
          base_price=260, volatility=0.01, base_volume=800),
    Issue("67580", "ソニーグループ", "Sony Group Corporation", 3, "0111", "TOPIX Core30", DATA_START,
          base_price=3000, volatility=0.018, base_volume=8_000_000),
    Issue("83060", "三菱ＵＦＪフィナンシャル・グループ", "Mitsubishi UFJ Financial Group,Inc.", 4, "0111",
          "TOPIX Core30", DATA_START, base_price=900, volatility=0.016, base_volume=40_000_000),
    Issue("80580", "三菱商事", "MITSUBISHI CORPORATION", 5, "0111", "TOPIX Core30", DATA_START,
          base_price=2500, volatility=0.015, base_volume=10_000_000),
    Issue("45020", "武田薬品工業", "Takeda Pharmaceutical Company Limited", 6, "0111", "TOPIX Core30",
          DATA_START, base_price=4300, volatility=0.013, base_volume=6_000_000),
    Issue(ETF_CODE, "合成ＴＯＰＩＸ連動型上場投信", "SYNTHETIC TOPIX ETF", -1, "0109", "-", DATA_START,
          base_price=2800, volatility=0.009, base_volume=1_500_000, product="014"),
]


@lru_cache(maxsize=None)
def universe(n_issues: int = DEFAULT_N_ISSUES) -> tuple[Issue, ...]:
    """The first ``n_issues`` issues (special cases first), in that stable order."""
    issues = list(_SPECIAL[:n_issues])
    taken = {i.code for i in issues}
    k = 0
    while len(issues) < n_issues:
        k += 1
        code = f"{1300 + (k * 613) % 8600:04d}0"
        if code in taken or code in {i.code for i in _SPECIAL}:
            continue
        taken.add(code)
        r = random.Random(_h("issue", code))
        issues.append(Issue(
            code=code,
            name=f"合成{code[:4]}株式会社",
            name_en=f"SYNTHETIC {code[:4]} CO.,LTD.",
            sector=r.randrange(len(SECTORS)),
            market=r.choice(["0111", "0111", "0112", "0113"]),
            scale=r.choice(["TOPIX Mid400", "TOPIX Small 1", "TOPIX Small 2", "-"]),
            listed=DATA_START,
            base_price=round(math.exp(r.uniform(math.log(150), math.log(20000)))),
            volatility=r.uniform(0.008, 0.03),
            base_volume=int(math.exp(r.uniform(math.log(5_000), math.log(5_000_000)))),
        ))
    return tuple(issues)


def issue_map(n_issues: int = DEFAULT_N_ISSUES) -> dict[str, Issue]:
    return {i.code: i for i in universe(n_issues)}


def is_listed(issue: Issue, day: date) -> bool:
    return issue.listed <= day and (issue.delisted is None or day <= issue.delisted)


def normalize_code(code: str) -> str:
    """A 4-character code means the common stock: ``7203`` -> ``72030``."""
    code = code.strip().upper()
    return code + "0" if len(code) == 4 else code


# --------------------------------------------------------------------------------------------
# Daily bars
# --------------------------------------------------------------------------------------------
def _splits(code: str, as_of: date | None) -> list[tuple[date, float]]:
    if code == SPLIT_CODE and (as_of is None or SPLIT_DATE <= as_of):
        return [(SPLIT_DATE, SPLIT_FACTOR)]
    return []


def _round_price(p: float) -> float:
    return float(round(p)) if p >= 100 else round(p, 1)


ANCHOR_YEAR = 2026  # each issue trades at about its ``base_price`` at the start of this year


@lru_cache(maxsize=256)
def _year_levels(issue: Issue) -> dict[int, float]:
    """Price level (today's share units) at the start of each year; the walk is pinned to them."""
    r = random.Random(_h("years", issue.code))
    years = range(DATA_START.year, DATA_END.year + 2)
    logs, x = {}, 0.0
    for y in years:
        logs[y] = x
        x += r.gauss(0.03, issue.volatility * 15.6)  # ~245 daily steps a year
    return {y: issue.base_price * math.exp(logs[y] - logs[ANCHOR_YEAR]) for y in years}


@lru_cache(maxsize=4096)
def _series(issue: Issue, year: int) -> dict[date, tuple | None]:
    """Raw (unadjusted) bars of every business day of ``year``, listing ignored.

    Value per day: (O, H, L, C, UL, LL, Vo, Va), or None for a no-trade day. Each year is a
    random walk seeded by (code, year) and bridged between the year-start levels of
    ``_year_levels``, so any single date costs one year of one issue. Raw prices before a split
    are expressed in the old (pre-split) share units.
    """
    days = trading_days(date(year, 1, 1), date(year, 12, 31))
    if not days:
        return {}
    r = random.Random(_h("walk", issue.code, year))
    rand, exp, vol = r.random, math.exp, issue.volatility
    levels = _year_levels(issue)
    start, target = levels[year], math.log(levels[year + 1] / levels[year])
    incs, jumps = [], []
    for _ in days:
        jump = rand() < 0.004
        inc = r.gauss(0.0, vol)
        if jump:
            inc += (1 if rand() < 0.5 else -1) * (0.12 + 0.13 * rand())
        incs.append(inc)
        jumps.append(jump)
    total, n = sum(incs), len(days)
    out: dict[date, tuple | None] = {}
    cum, prev_close = 0.0, None
    for i, d in enumerate(days):
        prev_level = start * exp(cum)
        cum += incs[i] - (total - target) / n
        close_ = start * exp(cum)
        open_ = prev_level * (1 + (rand() - 0.5) * vol)
        sh, sl, vmult = rand() * vol, rand() * vol, 0.4 + 1.2 * rand()
        if issue.code == ILLIQUID_CODE and _h("notrade", issue.code, d) % 6 == 0:
            out[d] = None
            continue
        split_before = issue.code == SPLIT_CODE and d < SPLIT_DATE
        unit = 1 / SPLIT_FACTOR if split_before else 1.0
        o, c = _round_price(open_ * unit), _round_price(close_ * unit)
        h = max(_round_price(max(open_, close_) * (1 + sh) * unit), o, c)
        lo = min(_round_price(min(open_, close_) * (1 - sl) * unit), o, c)
        shares = issue.base_volume * (SPLIT_FACTOR if split_before else 1.0)
        volume = max(1, round(shares * vmult * (3 if jumps[i] else 1) / 100)) * 100.0
        turnover = float(round(volume * (o + h + lo + c) / 4))
        ul = "1" if jumps[i] and prev_close and c > prev_close and c >= h else "0"
        ll = "1" if jumps[i] and prev_close and c < prev_close and c <= lo else "0"
        prev_close = c
        out[d] = (o, h, lo, c, ul, ll, volume, turnover)
    return out


def _bar_row(issue: Issue, d: date, as_of: date | None) -> dict[str, Any]:
    raw = _series(issue, d.year)[d]
    splits = _splits(issue.code, as_of)
    factor_today = 1.0
    cum = 1.0  # product of the factors of splits strictly after d
    for sd, f in splits:
        if sd == d:
            factor_today *= f
        if sd > d:
            cum *= f
    row: dict[str, Any] = {"Date": d.isoformat(), "Code": issue.code}
    if raw is None:
        row.update({k: None for k in ("O", "H", "L", "C")})
        row.update({"UL": "0", "LL": "0", "Vo": None, "Va": None, "AdjFactor": factor_today,
                    "AdjO": None, "AdjH": None, "AdjL": None, "AdjC": None, "AdjVo": None})
        return row | session_fields(None, cum)
    o, h, lo, c, ul, ll, vo, va = raw
    row.update({"O": o, "H": h, "L": lo, "C": c, "UL": ul, "LL": ll, "Vo": vo, "Va": va,
                "AdjFactor": factor_today,
                "AdjO": round(o * cum, 1), "AdjH": round(h * cum, 1), "AdjL": round(lo * cum, 1),
                "AdjC": round(c * cum, 1), "AdjVo": round(vo / cum, 1)})
    return row | session_fields(raw, cum)


def daily_bars_for_date(day: date | str, *, n_issues: int = DEFAULT_N_ISSUES,
                        as_of: date | None = None) -> list[dict[str, Any]]:
    """Exactly the rows /equities/bars/daily?date=DAY serves (sorted by Code); [] when closed."""
    d = to_date(day)
    if not is_trading_day(d) or (as_of is not None and d > as_of):
        return []
    return [_bar_row(i, d, as_of) for i in sorted(universe(n_issues), key=lambda i: i.code) if is_listed(i, d)]


def daily_bars_for_code(code: str, date_from: date | str | None = None, date_to: date | str | None = None,
                        *, n_issues: int = DEFAULT_N_ISSUES, as_of: date | None = None) -> list[dict[str, Any]]:
    """Exactly the rows /equities/bars/daily?code=CODE&from=..&to=.. serves (both ends inclusive)."""
    issue = issue_map(n_issues).get(normalize_code(code))
    if issue is None:
        return []
    start = max(to_date(date_from) if date_from else DATA_START, issue.listed)
    end = to_date(date_to) if date_to else DATA_END
    if issue.delisted:
        end = min(end, issue.delisted)
    if as_of is not None:
        end = min(end, as_of)
    return [_bar_row(issue, d, as_of) for d in trading_days(start, end)]


# --------------------------------------------------------------------------------------------
# Master
# --------------------------------------------------------------------------------------------
def master_rows(day: date | str | None = None, code: str | None = None, *,
                n_issues: int = DEFAULT_N_ISSUES, as_of: date | None = None) -> list[dict[str, Any]]:
    """Rows of /equities/master as of ``day`` (a closed day answers with the next business day)."""
    d = to_date(day) if day else (as_of or DATA_END)
    d = next_trading_day(d) if d <= DATA_END else d
    rows = []
    for i in sorted(universe(n_issues), key=lambda i: i.code):
        if code and i.code != normalize_code(code):
            continue
        if not is_listed(i, d):
            continue
        s17, s17nm, s33, s33nm = SECTORS[i.sector] if i.sector >= 0 else ETF_SECTOR
        mrgn = "2" if i.market in ("0111", "0109") else "1"
        rows.append({"Date": d.isoformat(), "Code": i.code, "CoName": i.name, "CoNameEn": i.name_en,
                     "S17": s17, "S17Nm": s17nm, "S33": s33, "S33Nm": s33nm, "ScaleCat": i.scale,
                     "Mkt": i.market, "MktNm": MARKETS[i.market], "Mrgn": mrgn, "MrgnNm": MARGIN[mrgn],
                     "ProdCat": i.product})
    return rows


# --------------------------------------------------------------------------------------------
# Financial summaries
# --------------------------------------------------------------------------------------------
_QUARTERS = [  # (CurPerType, period end (month, day), earliest disclosure (month, day))
    ("1Q", (6, 30), (8, 1)),
    ("2Q", (9, 30), (11, 1)),
    ("3Q", (12, 31), (2, 1)),
    ("FY", (3, 31), (5, 8)),
]


@lru_cache(maxsize=4096)
def _fins_for_issue(issue: Issue) -> tuple[dict[str, Any], ...]:
    out: list[dict[str, Any]] = []
    if issue.product != "011":
        return ()  # funds publish no earnings summaries
    scale = issue.base_price * issue.base_volume * 50  # a rough annual sales figure
    shares = max(1_000_000, int(issue.base_volume * 400))
    for fy in range(DATA_START.year - 1, DATA_END.year):
        growth = 1 + (_h("growth", issue.code, fy) % 200 - 80) / 1000
        annual = scale * growth
        for per, (pm, pd), (dm, dd) in _QUARTERS:
            per_end = date(fy + (1 if pm <= 3 else 0), pm, pd)
            disc_year = per_end.year + (1 if dm < per_end.month else 0)
            first = date(disc_year, dm, dd) + timedelta(days=_h("disc", issue.code, fy, per) % 10)
            if first < DATA_START or first > _all_trading_days()[-1]:
                continue
            disc = next_trading_day(first)
            if not is_listed(issue, disc):
                continue
            no = f"{disc:%Y%m%d}{_h('discno', issue.code, fy, per) % 1_000_000:06d}"
            row = summary_row(code=issue.code, disc=disc, disc_no=no, per=per, fy=fy, per_end=per_end,
                              annual=annual, shares=shares)
            out.append(row)

            def revision(day: date, time_: str, salt: str, mult: float) -> dict[str, Any]:
                no = _h(salt, issue.code, fy) % 1_000_000
                if f"{day:%Y%m%d}{no:06d}" == row["DiscNo"]:
                    no = (no + 1) % 1_000_000
                return revision_row(code=issue.code, day=day, time_=time_, disc_no=f"{day:%Y%m%d}{no:06d}",
                                    fy=fy, annual=annual, mult=mult, shares=shares)

            if per == "2Q" and (issue.code == SAME_DAY_CODE or _h("sameday", issue.code, fy) % 5 == 0):
                out.append(revision(disc, row["DiscTime"], "discno-rev2q", 1.02))  # same date and time
            if per == "3Q" and _h("revision", issue.code, fy) % 4 == 0:
                rev = next_trading_day(disc + timedelta(days=40))
                if rev <= _all_trading_days()[-1] and is_listed(issue, rev):
                    out.append(revision(rev, "15:30:00", "discno-rev", 0.97))
    out.sort(key=lambda r: (r["DiscDate"], r["DiscTime"], r["DiscNo"]))
    return tuple(out)


def fins_summary_rows(code: str | None = None, day: date | str | None = None, *,
                      n_issues: int = DEFAULT_N_ISSUES, as_of: date | None = None) -> list[dict[str, Any]]:
    """Rows of /fins/summary for a code and/or a disclosure date, sorted by DiscDate, DiscTime, Code."""
    want_day = to_date(day).isoformat() if day else None
    issues = universe(n_issues)
    if code:
        issues = tuple(i for i in issues if i.code == normalize_code(code))
    rows = []
    for i in issues:
        for r in _fins_for_issue(i):
            if want_day and r["DiscDate"] != want_day:
                continue
            if as_of is not None and r["DiscDate"] > as_of.isoformat():
                continue
            rows.append(dict(r))
    rows.sort(key=lambda r: (r["DiscDate"], r["DiscTime"], r["Code"], r["DiscNo"]))
    return rows


# --------------------------------------------------------------------------------------------
# Indices
# --------------------------------------------------------------------------------------------
INDICES = {"0000": ("TOPIX", 1400.0), "0028": ("TOPIX Core30", 700.0)}  # code: (name, level in 2015)


@lru_cache(maxsize=16)
def _index_series(code: str) -> dict[date, tuple[float, float, float, float]]:
    r = random.Random(_h("index", code))
    level = INDICES[code][1]
    out = {}
    for d in _all_trading_days():
        open_ = level * (1 + r.gauss(0, 0.002))
        level *= math.exp(r.gauss(0.0002, 0.009))
        hi = max(open_, level) * (1 + abs(r.gauss(0, 0.003)))
        lo = min(open_, level) * (1 - abs(r.gauss(0, 0.003)))
        out[d] = (round(open_, 2), round(hi, 2), round(lo, 2), round(level, 2))
    return out


def index_bars(code: str | None = None, date_from: date | str | None = None, date_to: date | str | None = None,
               *, as_of: date | None = None) -> list[dict[str, Any]]:
    """Rows of /indices/bars/daily (Date, Code, O, H, L, C) sorted by Code, Date."""
    codes = [code] if code else sorted(INDICES)
    end = to_date(date_to) if date_to else DATA_END
    if as_of is not None:
        end = min(end, as_of)
    rows = []
    for c in codes:
        if c not in INDICES:
            continue
        s = _index_series(c)
        for d in trading_days(to_date(date_from) if date_from else DATA_START, end):
            o, h, lo, cl = s[d]
            rows.append({"Date": d.isoformat(), "Code": c, "O": o, "H": h, "L": lo, "C": cl})
    return rows
