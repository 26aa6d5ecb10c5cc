"""J-Quants API v2 as a MooMarkets source (no Airflow).

Contract: https://jpx-jquants.com/en/spec (v2; v1 was discontinued on 2026-06-01); constants in
``settings``, HTTP in ``client``. The API key comes from the Airflow Connection's password field;
the Connection's host (when set) replaces the base URL.

Planning follows JPX's own advice: the plan's rate limit (requests per minute) is the physical
limit, so every request counts. ``/equities/bars/daily?date=D`` returns every issue for one day,
so a whole-market group costs one request (plus pages) per business day, while a short ticker
list over a long range is cheaper as one ``code`` + ``from``/``to`` request per ticker.

Which query shapes each endpoint accepts (v2 spec pages) decides which plans exist:

=================  ==========================  ================================================
dataset            endpoint                    query for a date range
=================  ==========================  ================================================
daily_quotes       /equities/bars/daily        ``code`` + ``from``/``to`` (or ``date``)
index_quotes       /indices/bars/daily         ``code`` + ``from``/``to`` (or ``date``)
fin_summary        /fins/summary               ``code`` alone (every disclosure; we filter)
listed_info        /equities/master            none: only ``code`` and/or ``date``; without a
                                               date it answers with *today's* master, so every
                                               listed_info unit is planned by date
trading_calendar   /markets/calendar           ``from``/``to`` (one request for the range)
=================  ==========================  ================================================
"""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from typing import Any, Callable

from moomarkets.errors import ConfigError
from moomarkets.sources.base import CorporateAction, FetchResult, FetchUnit, Interval, Source, chunk, market_dates
from moomarkets.sources.jquants import bulk
from moomarkets.sources.jquants.client import JQuantsClient
from moomarkets.sources.jquants.settings import (
    API_PREFIX,
    BY_CODE_RANGE_DATASETS,
    CALENDAR_DAYS_AHEAD,
    CODE_RE,
    DAY_CLOSE,
    DEFAULT_BASE_URL,
    DEFAULT_PLAN,
    INDEX_CODE_RE,
    MARKET_CLOSE,
    MARKET_TZ,
    MASTER_PAGES_PER_DATE,
    PATHS,
    PLAN_RATES,
    PRODUCT_CATEGORY_NAMES,
)


def normalize_code(code: str) -> str:
    """J-Quants codes are 5 characters; a 4-character code means the common stock (suffix 0)."""
    code = code.strip().upper()
    return code + "0" if len(code) == 4 else code


def _num(value: Any) -> Any:
    return None if value in (None, "") else value


def _flag(value: Any) -> bool | None:
    if value in (None, ""):
        return None
    return str(value) in ("1", "true", "True")


def _iso(value: str) -> str:
    return value if "-" in value else f"{value[:4]}-{value[4:6]}-{value[6:8]}"


class JQuantsSource(Source):
    kind = "jquants"
    datasets = ("daily_quotes", "listed_info", "fin_summary", "trading_calendar", "index_quotes")
    default_rate_limit = PLAN_RATES[DEFAULT_PLAN]
    default_max_concurrency = 2
    default_conn_id = "jquants_default"

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def normalize_code(cls, code: str) -> str:
        return normalize_code(code)

    @classmethod
    def validate_config(cls, config: dict[str, Any], subject: str = "data source") -> dict[str, Any]:
        plan = config.get("plan")
        if plan is not None and (not isinstance(plan, str) or plan not in PLAN_RATES):
            raise ConfigError(
                f"plan must be one of {', '.join(PLAN_RATES)}, got {plan!r}", field="config.plan", subject=subject
            )
        unknown = set(config) - {"plan", "rate_limit", "max_concurrency", "timeout", "bulk"}
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(sorted(map(str, unknown)))} (allowed: plan, rate_limit,"
                " max_concurrency, timeout, bulk)",
                field="config",
                subject=subject,
            )
        timeout = config.get("timeout", 30)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
            raise ConfigError(
                f"timeout must be a number of seconds from 1 to 300, got {timeout!r}", field="config.timeout",
                subject=subject,
            )
        bulk.validate_bulk_mode(config, subject)
        return super().validate_config(config, subject)

    @classmethod
    def rate_limit(cls, config: dict[str, Any]) -> list[str]:
        if "rate_limit" not in config and config.get("plan") in PLAN_RATES:
            return [PLAN_RATES[config["plan"]]]
        return super().rate_limit(config)

    @classmethod
    def trading_day_close(cls, dataset: str, params: dict[str, Any]) -> tuple[str, time]:
        return MARKET_TZ, DAY_CLOSE.get(dataset, MARKET_CLOSE)

    @classmethod
    def covered_days(cls, dataset: str, params: dict[str, Any], interval: Interval) -> tuple[date, date] | None:
        """A calendar run also loads ``days_ahead`` (see :meth:`plan`), so this morning's run
        already covers today's bars: their group's dependency on the calendar is met at once."""
        covered = super().covered_days(dataset, params, interval)
        if covered is None or dataset != "trading_calendar":
            return covered
        return covered[0], covered[1] + timedelta(days=params.get("days_ahead", CALENDAR_DAYS_AHEAD))

    @classmethod
    def validate_parameters(cls, dataset: str, params: dict[str, Any], subject: str = "job group") -> dict[str, Any]:
        if dataset == "trading_calendar":
            unknown = set(params) - {"days_ahead"}
            if unknown:
                raise ConfigError(
                    f"unknown parameter(s) {', '.join(sorted(map(str, unknown)))} (allowed: days_ahead)",
                    field="parameters", subject=subject,
                )
            ahead = params.get("days_ahead", CALENDAR_DAYS_AHEAD)
            if not isinstance(ahead, int) or isinstance(ahead, bool) or not 0 <= ahead <= 3660:
                raise ConfigError(f"days_ahead must be an integer 0..3660, got {ahead!r}",
                                  field="parameters.days_ahead", subject=subject)
            return {"days_ahead": ahead} if "days_ahead" in params else {}
        universe = "all_indices" if dataset == "index_quotes" else "all_listed"
        out: dict[str, Any] = {}
        unknown = set(params) - {"universe", "tickers", "plan"}
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(sorted(map(str, unknown)))} (allowed: universe, tickers, plan)",
                field="parameters",
                subject=subject,
            )
        has_u, has_t = "universe" in params, "tickers" in params
        if has_u == has_t:
            raise ConfigError(
                f"give exactly one of universe: {universe} or tickers: [codes]", field="parameters", subject=subject
            )
        if has_u:
            if params["universe"] != universe:
                raise ConfigError(
                    f"universe must be {universe!r}, got {params['universe']!r}",
                    field="parameters.universe",
                    subject=subject,
                )
            out["universe"] = universe
        else:
            tickers = params["tickers"]
            if not isinstance(tickers, list) or not tickers:
                raise ConfigError("tickers must be a non-empty list of codes", field="parameters.tickers", subject=subject)
            codes = []
            for t in tickers:
                text = str(t).strip().upper() if isinstance(t, (str, int)) else ""
                if dataset == "index_quotes":
                    if not INDEX_CODE_RE.match(text):
                        raise ConfigError(f"{t!r} is not a J-Quants index code (4 characters, e.g. 0000 for TOPIX)",
                                          field="parameters.tickers", subject=subject)
                    codes.append(text)
                    continue
                if not CODE_RE.match(text):
                    raise ConfigError(
                        f"{t!r} is not a J-Quants code (4 or 5 letters/digits, e.g. 7203 or 72030)",
                        field="parameters.tickers",
                        subject=subject,
                    )
                codes.append(normalize_code(text))
            out["tickers"] = sorted(set(codes))
        plan = params.get("plan", "auto")
        if plan not in ("auto", "by_date", "by_code"):
            raise ConfigError(f"plan must be auto, by_date or by_code, got {plan!r}", field="parameters.plan", subject=subject)
        if plan != "auto":
            out["plan"] = plan
        return out

    # -- running ----------------------------------------------------------------------------
    def _client(self) -> JQuantsClient:
        base = (self.credentials.host or DEFAULT_BASE_URL).rstrip("/")
        if not base.endswith(API_PREFIX):
            base += API_PREFIX
        return JQuantsClient(
            self.credentials.secret or "",
            base,
            timeout=float(self.config.get("timeout", 30)),
            acquire=self.acquire,
            on_throttle=self.on_throttle,
            counters=self.counters,
        )

    def plan(
        self,
        dataset: str,
        params: dict[str, Any],
        interval: Interval,
        *,
        max_units: int,
        business_days: Callable[[date, date], list[date] | None] | None = None,
    ) -> list[FetchUnit]:
        days = market_dates(interval, MARKET_TZ, DAY_CLOSE.get(dataset, MARKET_CLOSE))
        if not days:
            return []
        if dataset == "trading_calendar":  # one request covers the interval and the year ahead
            ahead = params.get("days_ahead", CALENDAR_DAYS_AHEAD)
            to = days[-1] + timedelta(days=ahead)
            return [FetchUnit(key=f"calendar:{days[0]}..{to}", kind="range",
                              params={"from": days[0].isoformat(), "to": to.isoformat()})]
        known = business_days(days[0], days[-1]) if business_days else None
        if known is not None:
            days = [d for d in days if d in set(known)]
        else:  # no calendar loaded yet: weekdays (holidays cost one cheap empty request)
            days = [d for d in days if d.weekday() < 5]
        if not days:
            return []
        tickers = params.get("tickers")
        mode = params.get("plan", "auto")
        size = -(-len(days) // max_units)
        if dataset == "listed_info":
            # /equities/master has no from/to: per day either one code+date query per ticker
            # ("code_dates") or the whole-market date query filtered to the tickers ("dates").
            per_code = bool(tickers) and (
                mode == "by_code" or (mode == "auto" and len(tickers) <= MASTER_PAGES_PER_DATE)
            )
            return [
                FetchUnit(
                    key=f"date:{b[0]}" if len(b) == 1 else f"dates:{b[0]}..{b[-1]}",
                    kind="code_dates" if per_code else "dates",
                    params={"dates": b, **({"codes": tickers} if tickers else {})},
                )
                for b in chunk([d.isoformat() for d in days], size)
            ]
        # by code: one request per code for the whole range; by date: one per day for every code.
        if tickers and dataset in BY_CODE_RANGE_DATASETS and (
            mode == "by_code" or (mode == "auto" and len(tickers) < len(days))
        ):
            batches = chunk(tickers, -(-len(tickers) // max_units))
            frm, to = days[0].isoformat(), days[-1].isoformat()
            return [
                FetchUnit(
                    key=f"code:{b[0]}" if len(b) == 1 else f"codes:{b[0]}..{b[-1]}",
                    kind="codes",
                    params={"codes": b, "from": frm, "to": to},
                )
                for b in batches
            ]
        # whole market over a range: bulk files where they cost fewer requests (sources/jquants/bulk.py)
        bulk_units: list[FetchUnit] = []
        if not tickers and mode == "auto" and bulk.bulk_allowed(dataset, self.config):
            bulk_units, days = bulk.plan_bulk_units(days, max_units)
            if not days:
                return bulk_units
            size = -(-len(days) // max(1, max_units - len(bulk_units)))
        batches = chunk([d.isoformat() for d in days], size)
        return bulk_units + [
            FetchUnit(
                key=f"date:{b[0]}" if len(b) == 1 else f"dates:{b[0]}..{b[-1]}",
                kind="dates",
                params={"dates": b, **({"codes": tickers} if tickers else {})},
            )
            for b in batches
        ]

    def fetch(self, dataset: str, unit: FetchUnit) -> FetchResult:
        if dataset not in PATHS:
            raise ConfigError(f"J-Quants dataset {dataset!r} is not supported")
        path, client = PATHS[dataset], self._client()
        raw: list[dict[str, Any]] = []
        compact = lambda d: d.replace("-", "")  # noqa: E731 - J-Quants takes YYYYMMDD
        if unit.kind == "range":
            raw = client.get_all(path, {"from": compact(unit.params["from"]), "to": compact(unit.params["to"])})
        elif unit.kind == "dates":
            wanted = set(unit.params.get("codes") or [])
            for day in unit.params["dates"]:
                rows = client.get_all(path, {"date": compact(day)})
                raw.extend(r for r in rows if not wanted or r.get("Code") in wanted)
        elif unit.kind == "code_dates":  # one code+date request per code per day
            for day in unit.params["dates"]:
                for code in unit.params["codes"]:
                    raw.extend(client.get_all(path, {"code": code, "date": compact(day)}))
        elif unit.kind == "bulk":  # bulk files (falls back to date= queries; see bulk.py)
            raw = bulk.fetch_bulk_unit(client, dataset, unit)
        elif unit.kind == "codes":
            if dataset not in BY_CODE_RANGE_DATASETS:
                raise ConfigError(f"{path} has no per-code range query; {dataset} units must be by date")
            frm, to = unit.params["from"], unit.params["to"]
            for code in unit.params["codes"]:
                if dataset == "fin_summary":  # by code returns every disclosure: keep the range's
                    rows = client.get_all(path, {"code": code})
                    raw.extend(r for r in rows if frm <= _iso(str(r.get("DiscDate", ""))) <= to)
                else:
                    raw.extend(client.get_all(path, {"code": code, "from": compact(frm), "to": compact(to)}))
        else:
            raise ValueError(f"unknown unit kind {unit.kind!r}")
        normalize = getattr(self, f"normalize_{dataset}")
        return FetchResult(rows=[normalize(r) for r in raw], requests=client.requests_made)

    def normalize_daily_quotes(self, r: dict[str, Any]) -> dict[str, Any]:
        """One /equities/bars/daily row; nulls (no trade that day) stay NULL."""
        return {
            "source": self.code,
            "code": r["Code"],
            "date": _iso(r["Date"]),
            "open": _num(r.get("O")),
            "high": _num(r.get("H")),
            "low": _num(r.get("L")),
            "close": _num(r.get("C")),
            "upper_limit": _flag(r.get("UL")),
            "lower_limit": _flag(r.get("LL")),
            "volume": _num(r.get("Vo")),
            "turnover": _num(r.get("Va")),
            "adjustment_factor": _num(r.get("AdjFactor")),
            "adj_open": _num(r.get("AdjO")),
            "adj_high": _num(r.get("AdjH")),
            "adj_low": _num(r.get("AdjL")),
            "adj_close": _num(r.get("AdjC")),
            "adj_volume": _num(r.get("AdjVo")),
        }

    def normalize_listed_info(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "source": self.code, "code": r["Code"], "date": _iso(r["Date"]),
            "company_name": r.get("CoName"), "company_name_en": r.get("CoNameEn"),
            "sector17_code": r.get("S17"), "sector17_name": r.get("S17Nm"),
            "sector33_code": r.get("S33"), "sector33_name": r.get("S33Nm"),
            "scale_category": r.get("ScaleCat"), "market_code": r.get("Mkt"), "market_name": r.get("MktNm"),
            "margin_code": r.get("Mrgn"), "margin_name": r.get("MrgnNm"),
            "product_category": r.get("ProdCat") or None,
            "product_category_name": r.get("ProdCatNm") or PRODUCT_CATEGORY_NAMES.get(r.get("ProdCat") or ""),
        }

    def normalize_fin_summary(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "source": self.code, "disclosure_number": r["DiscNo"], "code": r["Code"],
            "disclosed_date": _iso(r["DiscDate"]), "disclosed_time": r.get("DiscTime") or None,
            "document_type": r.get("DocType") or None, "fiscal_period": r.get("CurPerType") or None,
            "fiscal_year_start": _num(r.get("CurFYSt")), "fiscal_year_end": _num(r.get("CurFYEn")),
            "period_end": _num(r.get("CurPerEn")), "net_sales": _num(r.get("Sales")),
            "operating_profit": _num(r.get("OP")), "ordinary_profit": _num(r.get("OdP")),
            "profit": _num(r.get("NP")), "eps": _num(r.get("EPS")),
            "payload": json.dumps(r, ensure_ascii=False, sort_keys=True),
        }

    def normalize_trading_calendar(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"source": self.code, "date": _iso(r["Date"]), "hol_div": int(r["HolDiv"])}

    def normalize_index_quotes(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "source": self.code, "code": r.get("Code", "0000"), "date": _iso(r["Date"]),
            "open": _num(r.get("O")), "high": _num(r.get("H")), "low": _num(r.get("L")), "close": _num(r.get("C")),
        }

    # -- restatement --------------------------------------------------------------------------
    def corporate_actions(self, dataset: str, result: FetchResult) -> list[CorporateAction]:
        """J-Quants restates a code's Adj* history on a split or reverse split: ``AdjFactor`` != 1
        on the effective date (0.5 for a 1:2 split, 2 for a 2:1 reverse split)."""
        if dataset != "daily_quotes":
            return []
        out = []
        for r in result.rows:
            f = r.get("adjustment_factor")
            if f is None or float(f) == 1.0:
                continue
            out.append(CorporateAction(code=r["code"], date=date.fromisoformat(str(r["date"])[:10]),
                                       action="split" if float(f) < 1 else "reverse_split", factor=float(f)))
        return out

    def fetch_history(self, dataset: str, code: str, start: date, end: date) -> FetchResult:
        """ONE ``code`` + ``from``/``to`` query over the span (its pages followed)."""
        if dataset != "daily_quotes":
            raise ConfigError(f"J-Quants restates only daily_quotes, not {dataset!r}")
        unit = FetchUnit(key=f"code:{code}", kind="codes",
                         params={"codes": [normalize_code(code)], "from": start.isoformat(), "to": end.isoformat()})
        return self.fetch(dataset, unit)

    def validate_credentials(self, dataset: str | None = None) -> None:
        """One cheap request; with ``dataset``, to that dataset's endpoint (does the plan cover it?)."""
        if dataset is not None and dataset not in PATHS:
            raise ConfigError(f"J-Quants dataset {dataset!r} is not supported (known: {', '.join(PATHS)})")
        with self._client() as client:
            client.validate_credentials(dataset)

