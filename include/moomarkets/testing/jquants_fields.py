"""Every field the fake J-Quants v2 endpoints serve, and builders for the fields beyond the core ones.

Pure functions, no I/O, no clock, no random state (``jquants_data`` passes in what varies). Each
field list follows a jpx-jquants.com v2 spec page and the official client's column list
(``jquants-api-client`` 2.8.0, ``jquantsapi/constants.py``), which
``tests/testing/test_jquants_official_client.py`` checks against the fake:

- /equities/bars/daily: /en/spec/eq-bars-daily, ``EQ_BARS_DAILY_COLUMNS_V2`` (whole day, then the
  morning ``M*`` and afternoon ``A*`` sessions; the real API serves the sessions on the Premium
  plan only; the fake serves them on every plan). The client's list stops at ``AAdjH``; the spec
  goes on with ``AAdjL``, ``AAdjC``, ``AAdjVo``, and so does the fake.
- /equities/master: /en/spec/eq-master, ``EQ_MASTER_COLUMNS_V2`` (``ProdCat`` last). Its codes
  and names: /en/spec/eq-master/product-category. The master serves the code only (the client
  lists no name field); names come from that table.
- /fins/summary: /en/spec/fin-summary, ``FIN_SUMMARY_COLUMNS_V2`` (111 fields). Numbers are
  strings; an empty string means "not disclosed".
- /markets/calendar (/en/spec/mkt-cal, ``MARKETS_TRADING_CALENDAR_COLUMNS_V2``: Date, HolDiv) and
  /indices/bars/daily[/topix] (/en/spec/idx-bars-daily[-topix], ``INDICES_COLUMNS_V2`` /
  ``INDICES_TOPIX_COLUMNS_V2``: Date, [Code,] O, H, L, C) are built in ``jpx_calendar`` and
  ``jquants_data``; their field lists are here so one module names every contract.
"""

from __future__ import annotations

from datetime import date
from typing import Any

_DAY = ("O", "H", "L", "C", "UL", "LL", "Vo", "Va")
_ADJ = ("AdjO", "AdjH", "AdjL", "AdjC", "AdjVo")
BAR_FIELDS = ("Date", "Code", *_DAY, "AdjFactor", *_ADJ,
              *(f"M{f}" for f in _DAY), *(f"M{f}" for f in _ADJ),
              *(f"A{f}" for f in _DAY), *(f"A{f}" for f in _ADJ))
MASTER_FIELDS = ("Date", "Code", "CoName", "CoNameEn", "S17", "S17Nm", "S33", "S33Nm",
                 "ScaleCat", "Mkt", "MktNm", "Mrgn", "MrgnNm", "ProdCat")
CALENDAR_FIELDS = ("Date", "HolDiv")
INDEX_FIELDS = ("Date", "Code", "O", "H", "L", "C")
TOPIX_FIELDS = ("Date", "O", "H", "L", "C")

# /en/spec/eq-master/product-category
PRODUCT_CATEGORIES = {
    "011": "Domestic Stocks", "012": "Preferred Equity Investment Certificates", "013": "REITs",
    "014": "ETFs", "021": "Foreign Stocks", "022": "Foreign REITs", "023": "Foreign ETFs",
    "024": "Foreign Stock Depositary Receipts",
}

_FIN_HEAD = ("DiscDate", "DiscTime", "Code", "DiscNo", "DocType", "CurPerType", "CurPerSt", "CurPerEn",
             "CurFYSt", "CurFYEn", "NxtFYSt", "NxtFYEn")
_FIN_RESULTS = ("Sales", "OP", "OdP", "NP", "EPS", "DEPS", "TA", "Eq", "EqAR", "BPS", "CFO", "CFI", "CFF",
                "CashEq")
_DIV = ("Div1Q", "Div2Q", "Div3Q", "DivFY", "DivAnn", "DivUnit")
FIN_SUMMARY_FIELDS = (
    *_FIN_HEAD, *_FIN_RESULTS,
    *_DIV, "DivTotalAnn", "PayoutRatioAnn",
    *(f"F{f}" for f in _DIV), "FDivTotalAnn", "FPayoutRatioAnn",
    *(f"NxF{f}" for f in _DIV), "NxFPayoutRatioAnn",
    "FSales2Q", "FOP2Q", "FOdP2Q", "FNP2Q", "FEPS2Q", "NxFSales2Q", "NxFOP2Q", "NxFOdP2Q", "NxFNp2Q", "NxFEPS2Q",
    "FSales", "FOP", "FOdP", "FNP", "FEPS", "NxFSales", "NxFOP", "NxFOdP", "NxFNp", "NxFEPS",
    "MatChgSub", "SigChgInC", "ChgByASRev", "ChgNoASRev", "ChgAcEst", "RetroRst", "ShOutFY", "TrShFY", "AvgSh",
    "NCSales", "NCOP", "NCOdP", "NCNP", "NCEPS", "NCTA", "NCEq", "NCEqAR", "NCBPS",
    "FNCSales2Q", "FNCOP2Q", "FNCOdP2Q", "FNCNP2Q", "FNCEPS2Q", "NxFNCSales2Q", "NxFNCOP2Q", "NxFNCOdP2Q",
    "NxFNCNP2Q", "NxFNCEPS2Q", "FNCSales", "FNCOP", "FNCOdP", "FNCNP", "FNCEPS", "NxFNCSales", "NxFNCOP",
    "NxFNCOdP", "NxFNCNP", "NxFNCEPS",
    "ShEq", "NCShEq", "ROE", "NCROE",
)


# --------------------------------------------------------------------------------------------
# Daily bars: the morning and afternoon sessions of a day's raw bar
# --------------------------------------------------------------------------------------------
def _px(p: float) -> float:
    return float(round(p)) if p >= 100 else round(p, 1)


def session_fields(raw: tuple | None, cum: float) -> dict[str, Any]:
    """``M*``/``A*`` fields of one bar: ``raw`` is (O, H, L, C, UL, LL, Vo, Va) or None (no trade).

    The morning opens at O and the afternoon closes at C; the day's high and low fall in one
    session each; the sessions' volumes and turnovers add up to the day's. ``cum`` is the split
    adjustment of the day (as for ``Adj*``). A no-trade day has null prices and volumes.
    """
    if raw is None:
        out: dict[str, Any] = {}
        for s in ("M", "A"):
            out |= {f"{s}{f}": None for f in ("O", "H", "L", "C")} | {f"{s}UL": "0", f"{s}LL": "0"}
            out |= {f"{s}Vo": None, f"{s}Va": None} | {f"{s}{f}": None for f in _ADJ}
        return {k: out[k] for k in BAR_FIELDS[16:]}
    o, h, lo, c, ul, ll, vo, va = raw
    k = int(vo // 100)
    w = 0.3 + (k % 41) / 100  # share of the day's move and volume in the morning: 0.30 .. 0.70
    mc = min(max(_px(o + (c - o) * w), lo), h)
    high_am, low_am = k % 2 == 0, k % 3 == 0
    mh = h if high_am else max(o, mc)
    ml = lo if low_am else min(o, mc)
    ah = max(mc, c) if high_am else h
    al = min(mc, c) if low_am else lo
    mvo = round(vo * w / 100) * 100.0
    mva = float(round(va * mvo / vo)) if vo else 0.0
    sessions = {"M": (o, mh, ml, mc, "0", "0", mvo, mva), "A": (mc, ah, al, c, ul, ll, vo - mvo, va - mva)}
    out = {}
    for s, (so, sh, sl, sc, sul, sll, svo, sva) in sessions.items():
        out |= {f"{s}O": so, f"{s}H": sh, f"{s}L": sl, f"{s}C": sc, f"{s}UL": sul, f"{s}LL": sll,
                f"{s}Vo": svo, f"{s}Va": sva,
                f"{s}AdjO": round(so * cum, 1), f"{s}AdjH": round(sh * cum, 1), f"{s}AdjL": round(sl * cum, 1),
                f"{s}AdjC": round(sc * cum, 1), f"{s}AdjVo": round(svo / cum, 1)}
    return {k: out[k] for k in BAR_FIELDS[16:]}


# --------------------------------------------------------------------------------------------
# Financial summaries
# --------------------------------------------------------------------------------------------
def _s(x: float | int) -> str:
    return str(round(x))


def summary_row(*, code: str, disc: date, disc_no: str, per: str, fy: int, per_end: date,
                annual: float, shares: int) -> dict[str, Any]:
    """One consolidated results disclosure (``{per}FinancialStatements_Consolidated_JP``), every field.

    ``annual`` is the fiscal year's sales; the quarter reports the year-to-date share of it.
    Dividends are paid at 2Q and FY (30% of the full-year EPS); forecasts of the current year are
    disclosed up to 3Q, next year's at FY; non-consolidated results (``NC*``) at FY only; the
    non-consolidated forecasts (``FNC*``, ``NxFNC*``) are not disclosed (empty), as for most
    consolidated filers.
    """
    fy_start, fy_end = date(fy, 4, 1), date(fy + 1, 3, 31)
    is_fy, n = per == "FY", ("1Q", "2Q", "3Q", "FY").index(per) + 1
    sales = round(annual * n / 4)
    op = round(sales * 0.08)
    np_ = round(op * 0.7)
    eps = round(np_ / shares, 2)
    cash_q = per in ("2Q", "FY")
    eq = round(annual * 0.7)
    row = dict.fromkeys(FIN_SUMMARY_FIELDS, "")
    row |= {
        "DiscDate": disc.isoformat(), "DiscTime": "15:00:00", "Code": code, "DiscNo": disc_no,
        "DocType": f"{per}FinancialStatements_Consolidated_JP", "CurPerType": per,
        "CurPerSt": fy_start.isoformat(), "CurPerEn": per_end.isoformat(),
        "CurFYSt": fy_start.isoformat(), "CurFYEn": fy_end.isoformat(),
        "NxtFYSt": date(fy + 1, 4, 1).isoformat() if is_fy else "",
        "NxtFYEn": date(fy + 2, 3, 31).isoformat() if is_fy else "",
        "Sales": str(sales), "OP": str(op), "OdP": _s(op * 1.05), "NP": str(np_),
        "EPS": f"{eps}", "DEPS": "", "TA": _s(annual * 1.6), "Eq": str(eq),
        "EqAR": "0.437", "BPS": f"{round(annual * 0.7 / shares, 2)}",
        "CFO": _s(op * 1.1) if cash_q else "", "CFI": str(-round(op * 0.6)) if cash_q else "",
        "CFF": str(-round(op * 0.3)) if cash_q else "", "CashEq": _s(annual * 0.15) if cash_q else "",
        "FSales": _s(annual * 1.03), "FOP": _s(annual * 1.03 * 0.08), "FOdP": _s(annual * 1.03 * 0.084),
        "FNP": _s(annual * 1.03 * 0.056), "FEPS": f"{round(annual * 1.03 * 0.056 / shares, 2)}",
        "ShOutFY": str(shares), "TrShFY": str(shares // 50), "AvgSh": str(shares - shares // 50),
        "MatChgSub": "false", "SigChgInC": "", "ChgByASRev": "false", "ChgNoASRev": "false",
        "ChgAcEst": "false", "RetroRst": "false",
        "ShEq": _s(eq * 0.95),
    }
    outstanding = shares - shares // 50
    dps = max(1, round(annual * 0.056 / shares * 0.3))  # the year's dividend per share, whole yen
    fdps = max(1, round(annual * 1.03 * 0.056 / shares * 0.3))
    interim = dps // 2
    if per in ("2Q", "3Q", "FY"):
        row |= {"Div1Q": "0.00", "Div2Q": f"{interim:.2f}"}
    if is_fy:
        row |= {"Div3Q": "0.00", "DivFY": f"{dps - interim:.2f}", "DivAnn": f"{dps:.2f}",
                "DivTotalAnn": _s(dps * outstanding), "PayoutRatioAnn": f"{dps / max(eps, 0.01):.3f}",
                "ROE": f"{np_ / max(eq * 0.95, 1):.3f}"}
        nx = round(annual * 1.05)
        ndps = max(1, round(nx * 0.056 / shares * 0.3))
        row |= {"NxFDiv1Q": "0.00", "NxFDiv2Q": f"{ndps // 2:.2f}", "NxFDiv3Q": "0.00",
                "NxFDivFY": f"{ndps - ndps // 2:.2f}", "NxFDivAnn": f"{ndps:.2f}",
                "NxFPayoutRatioAnn": "0.300",
                "NxFSales2Q": _s(nx / 2), "NxFOP2Q": _s(nx / 2 * 0.08), "NxFOdP2Q": _s(nx / 2 * 0.084),
                "NxFNp2Q": _s(nx / 2 * 0.056), "NxFEPS2Q": f"{round(nx / 2 * 0.056 / shares, 2)}",
                "NxFSales": str(nx), "NxFOP": _s(nx * 0.08), "NxFOdP": _s(nx * 0.084), "NxFNp": _s(nx * 0.056),
                "NxFEPS": f"{round(nx * 0.056 / shares, 2)}"}
        nc = 0.6  # the parent company alone
        row |= {"NCSales": _s(sales * nc), "NCOP": _s(op * nc), "NCOdP": _s(op * 1.05 * nc),
                "NCNP": _s(np_ * nc), "NCEPS": f"{round(np_ * nc / shares, 2)}", "NCTA": _s(annual * 1.6 * nc),
                "NCEq": _s(eq * nc), "NCEqAR": "0.512", "NCBPS": f"{round(eq * nc / shares, 2)}",
                "NCShEq": _s(eq * nc * 0.98), "NCROE": f"{np_ / max(eq * nc * 0.98, 1):.3f}"}
    else:
        row |= {"FDiv2Q": f"{fdps // 2:.2f}" if per == "1Q" else "", "FDiv3Q": "0.00" if per != "3Q" else "",
                "FDivFY": f"{fdps - fdps // 2:.2f}", "FDivAnn": f"{fdps:.2f}",
                "FDivTotalAnn": _s(fdps * outstanding), "FPayoutRatioAnn": "0.300"}
        if per == "1Q":
            row |= {"FSales2Q": _s(annual * 0.5), "FOP2Q": _s(annual * 0.5 * 0.08),
                    "FOdP2Q": _s(annual * 0.5 * 0.084), "FNP2Q": _s(annual * 0.5 * 0.056),
                    "FEPS2Q": f"{round(annual * 0.5 * 0.056 / shares, 2)}"}
    return row


def revision_row(*, code: str, day: date, time_: str, disc_no: str, fy: int, annual: float, mult: float,
                 shares: int) -> dict[str, Any]:
    """An ``EarnForecastRevision``: only the revised full-year forecasts, every other field empty."""
    fy_start, fy_end = date(fy, 4, 1).isoformat(), date(fy + 1, 3, 31).isoformat()
    return dict.fromkeys(FIN_SUMMARY_FIELDS, "") | {
        "DiscDate": day.isoformat(), "DiscTime": time_, "Code": code, "DiscNo": disc_no,
        "DocType": "EarnForecastRevision", "CurPerType": "FY",
        "CurPerSt": fy_start, "CurPerEn": fy_end, "CurFYSt": fy_start, "CurFYEn": fy_end,
        "FSales": _s(annual * mult), "FOP": _s(annual * mult * 0.08), "FOdP": _s(annual * mult * 0.084),
        "FNP": _s(annual * mult * 0.056), "FEPS": f"{round(annual * mult * 0.056 / shares, 2)}",
    }
