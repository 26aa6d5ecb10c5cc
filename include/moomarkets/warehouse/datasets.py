"""Dataset tables: columns, primary key and what each column means (no Airflow).

Sources normalize their payloads onto these, so J-Quants and Yahoo rows land in one
``daily_quotes`` table told apart by ``source``. The DDL lives in the alembic migrations.
"""

from __future__ import annotations

from dataclasses import dataclass

from moomarkets.config.checks import Check, dataset_checks
from moomarkets.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    name: str
    table: str
    columns: tuple[str, ...]  # loaded columns, in COPY order (excludes loaded_at)
    key: tuple[str, ...]
    description: str
    # Values that depend on when the source was asked (restated after corporate actions): an
    # upsert keeps the stored ones when its fetch is older than the row's ``as_of_column``.
    adjusted_columns: tuple[str, ...] = ()
    as_of_column: str | None = None  # timestamptz column, not in ``columns``; set by upsert_rows

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks run on the rows of each loaded interval, with their default severity and
        thresholds (declared in ``config.checks.DATASET_CHECKS``, which group validation reads too;
        the SQL is in ``warehouse.checks``). A group overrides them under ``parameters.checks``."""
        return dataset_checks(self.name)

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key)


DAILY_QUOTES = Dataset(
    name="daily_quotes",
    table="daily_quotes",
    columns=(
        "source", "code", "date",
        "open", "high", "low", "close", "upper_limit", "lower_limit", "volume", "turnover",
        "adjustment_factor", "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume",
    ),
    key=("source", "code", "date"),
    description="Daily OHLCV per issue: raw prices as traded plus split-adjusted prices and the factor.",
    # adj_* and the factor are restated by every source; Yahoo's open..close and volume are
    # split-adjusted as of the fetch too (J-Quants' raw values never change, so guarding them is free).
    adjusted_columns=("open", "high", "low", "close", "volume", "adjustment_factor",
                      "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"),
    as_of_column="adjusted_as_of",
)

LISTED_INFO = Dataset(
    name="listed_info",
    table="listed_info",
    columns=(
        "source", "code", "date", "company_name", "company_name_en", "sector17_code", "sector17_name",
        "sector33_code", "sector33_name", "scale_category", "market_code", "market_name", "margin_code",
        "margin_name", "product_category", "product_category_name",
    ),
    key=("source", "code", "date"),
    description="Issue master (names, sectors, market, margin, product category) for the date it is valid for.",
)

FIN_SUMMARY = Dataset(
    name="fin_summary",
    table="fin_summary",
    columns=(
        "source", "disclosure_number", "code", "disclosed_date", "disclosed_time", "document_type",
        "fiscal_period", "fiscal_year_start", "fiscal_year_end", "period_end", "net_sales", "operating_profit",
        "ordinary_profit", "profit", "eps", "payload",
    ),
    key=("source", "disclosure_number"),
    description="Financial statement disclosures, one row per disclosure, every field kept in payload.",
)

TRADING_CALENDAR = Dataset(
    name="trading_calendar",
    table="trading_calendar",
    columns=("source", "date", "hol_div"),
    key=("source", "date"),
    description="Exchange calendar: business days, half days and holidays.",
)

INDEX_QUOTES = Dataset(
    name="index_quotes",
    table="index_quotes",
    columns=("source", "code", "date", "open", "high", "low", "close"),
    key=("source", "code", "date"),
    description="Daily OHLC of indices.",
)

CORPORATE_ACTIONS = Dataset(
    name="corporate_actions",
    table="corporate_actions",
    columns=("source", "code", "date", "action", "value"),
    key=("source", "code", "date", "action"),
    description="Dividends (cash per share) and splits (new shares per old share).",
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (DAILY_QUOTES, LISTED_INFO, FIN_SUMMARY, TRADING_CALENDAR, INDEX_QUOTES, CORPORATE_ACTIONS)
}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})", field="dataset") from None
