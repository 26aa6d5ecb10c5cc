"""Reading yfinance's download frame (pandas) into plain per-ticker records and numbers."""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def num(x: Any) -> float | None:
    """A finite float, or None for missing, NaN and infinite values."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def rounded(x: float | None, digits: int | None) -> float | None:
    return None if x is None or digits is None else round(x, digits)


def ticker_frame(data: pd.DataFrame | None, ticker: str) -> pd.DataFrame | None:
    """The ticker's rows with a bar (Close present), or None when it has none."""
    if data is None or getattr(data, "empty", True):
        return None
    cols = data.columns
    if getattr(cols, "nlevels", 1) > 1:
        if ticker not in set(cols.get_level_values(0)):
            return None
        sub = data[ticker]
    else:
        sub = data
    if "Close" not in sub.columns:
        return None
    sub = sub.dropna(how="all")
    if sub["Close"].notna().sum() == 0:
        return None
    return sub


def records(frame: pd.DataFrame) -> list[tuple[date, dict[str, Any]]]:
    """(local bar date, column -> value) per row; yfinance indexes daily bars by exchange-local time."""
    out = []
    for idx, rec in zip(frame.index, frame.to_dict("records")):
        out.append((idx.date() if hasattr(idx, "date") else date.fromisoformat(str(idx)[:10]), rec))
    return out


def bar_dates(frame: pd.DataFrame | None, start: date, end: date, allowed: set[date] | None) -> set[date]:
    """The dates in ``[start, end]`` (and in ``allowed``, when given) with a Close."""
    if frame is None:
        return set()
    days = set()
    for day, rec in records(frame):
        if num(rec.get("Close")) is not None and start <= day <= end and (allowed is None or day in allowed):
            days.add(day)
    return days
