"""The interface every data source implements, and the value types around it (no Airflow)."""

from __future__ import annotations

import abc
import time as time_module
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Callable, ClassVar
from zoneinfo import ZoneInfo

from moomarkets.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    """What a source needs from its Airflow Connection. ``repr`` never shows the secret."""

    secret: str | None = None
    host: str | None = None  # overrides the source's base URL when set (e.g. a local fake)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One rule for a host without a scheme, wherever the credentials come from: HTTPS.
        if self.host and "://" not in self.host:
            object.__setattr__(self, "host", f"https://{self.host}")

    def __repr__(self) -> str:
        return f"Credentials(secret={'***' if self.secret else None}, host={self.host!r})"


@dataclass(frozen=True)
class Interval:
    """A DAG run's data interval (aware datetimes, start inclusive, end exclusive)."""

    start: datetime
    end: datetime


@dataclass
class FetchUnit:
    """One mapped task's worth of work. Small and JSON-able: it travels through XCom."""

    key: str  # unique within a run, readable in the UI ("date:2026-11-20", "code:72030")
    kind: str  # "dates", "codes", "batch", ...
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchUnit:
        return cls(key=data["key"], kind=data["kind"], params=dict(data["params"]))


@dataclass
class FetchResult:
    """Rows for one unit, normalized to the dataset's table, plus what it cost."""

    rows: list[dict[str, Any]]
    requests: int = 0
    # per-item problems that do not fail the whole unit (e.g. one ticker of a batch)
    item_errors: dict[str, str] = field(default_factory=dict)
    # the items of item_errors that may heal on a retry (rate limited, network); the others
    # (delisted symbol, trading gap) fail the unit without spending Airflow retries
    retryable_items: set[str] = field(default_factory=set)
    # corporate actions the answer revealed beyond ``rows`` (e.g. Yahoo's events of a price fetch);
    # read them through :meth:`Source.corporate_actions`
    actions: list[CorporateAction] = field(default_factory=list)


@dataclass
class RequestCounters:
    """What one source instance's HTTP requests met: counted where each request is sent and
    answered (the clients, the Yahoo session, the rate-limit wait), so a fetch that raises still
    reports what it cost. The pipeline records them per unit and the Airflow layer emits metrics."""

    requests: int = 0  # requests sent (each took a rate-limit token)
    http_429: int = 0  # answers with status 429
    http_5xx: int = 0  # answers with status 500..599
    wait_seconds: float = 0.0  # time spent in acquire(): rate-limit waits, 429 pauses, the limiter's round trip

    def answered(self, status: int) -> None:
        if status == 429:
            self.http_429 += 1
        elif 500 <= status <= 599:
            self.http_5xx += 1

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "http_429": self.http_429, "http_5xx": self.http_5xx,
                "wait_seconds": round(self.wait_seconds, 3)}


@dataclass(frozen=True)
class CorporateAction:
    """An event after which the source restates the code's earlier (adjusted) history."""

    code: str
    date: date  # ex / effective date
    action: str  # "split", "reverse_split", "dividend", ...
    factor: float | None = None  # the source's own number (AdjFactor, split ratio, cash per share)


def market_dates(interval: Interval, market_tz: str, close: time) -> list[date]:
    """Local trading dates whose market close falls inside the interval.

    A run for (Mon 19:00, Tue 19:00] Tokyo loads Tuesday; a weekend interval loads nothing new
    until Monday's close. This makes a backfill by date range load exactly those dates.
    """
    tz = ZoneInfo(market_tz)
    first = interval.start.astimezone(tz).date() - timedelta(days=1)
    last = interval.end.astimezone(tz).date()
    out = []
    d = first
    while d <= last:
        closes_at = datetime.combine(d, close, tzinfo=tz)
        if interval.start <= closes_at < interval.end:
            out.append(d)
        d += timedelta(days=1)
    return out


def chunk(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Source(abc.ABC):
    """One market data API.

    Class attributes describe it; an instance is built per task with the Connection's credentials
    and a ``acquire`` callable that every HTTP request must call first (the shared rate limit).
    """

    kind: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    default_rate_limit: ClassVar[str | list[str]]
    default_max_concurrency: ClassVar[int] = 2
    default_conn_id: ClassVar[str]

    def __init__(
        self,
        code: str,
        config: dict[str, Any],
        credentials: Credentials,
        *,
        acquire: Callable[[], Any] | None = None,
        on_throttle: Callable[[float], None] | None = None,
    ):
        self.code = code
        self.config = config
        self.credentials = credentials
        self.counters = RequestCounters()
        self.acquire = None if acquire is None else self._timed(acquire)
        self.on_throttle = on_throttle

    def _timed(self, acquire: Callable[[], Any]) -> Callable[[], Any]:
        """``acquire`` that adds the time it blocked to ``counters.wait_seconds``."""

        def timed() -> Any:
            started = time_module.monotonic()
            try:
                return acquire()
            finally:
                self.counters.wait_seconds += time_module.monotonic() - started

        return timed

    # -- config ---------------------------------------------------------------------------
    @classmethod
    def validate_config(cls, config: dict[str, Any], subject: str = "data source") -> dict[str, Any]:
        """Check the non-secret config; returns it normalized. Subclasses extend."""
        from moomarkets.ratelimit import parse_rates

        out = dict(config)
        if "rate_limit" in out:
            try:
                parse_rates(out["rate_limit"])
            except ValueError as exc:
                raise ConfigError(str(exc), field="config.rate_limit", subject=subject) from None
        mc = out.get("max_concurrency", cls.default_max_concurrency)
        if not isinstance(mc, int) or isinstance(mc, bool) or not 1 <= mc <= 128:
            raise ConfigError(
                f"max_concurrency must be an integer from 1 to 128, got {mc!r}",
                field="config.max_concurrency",
                subject=subject,
            )
        return out

    @classmethod
    def rate_limit(cls, config: dict[str, Any]) -> list[str]:
        spec = config.get("rate_limit", cls.default_rate_limit)
        return [spec] if isinstance(spec, str) else list(spec)

    @classmethod
    def normalize_code(cls, code: str) -> str:
        """A code as the warehouse stores it (e.g. J-Quants "7203" -> "72030"); sources override."""
        return code.strip()

    @classmethod
    def max_concurrency(cls, config: dict[str, Any]) -> int:
        return int(config.get("max_concurrency", cls.default_max_concurrency))

    @classmethod
    @abc.abstractmethod
    def trading_day_close(cls, dataset: str, params: dict[str, Any]) -> tuple[str, time]:
        """(market timezone, local close time) that dates a trading day of ``dataset`` for these
        parameters: a run loads day D when D's close falls in its data interval."""

    @classmethod
    def covered_days(cls, dataset: str, params: dict[str, Any], interval: Interval) -> tuple[date, date] | None:
        """(first, last) day a run of ``dataset`` over ``interval`` completely loads, None when none:
        what a downstream group's run waits for (``runs.covers_from`` / ``covers_to``). Default: the
        days whose close falls in the interval; a source whose run loads more (days ahead) extends it."""
        days = market_dates(interval, *cls.trading_day_close(dataset, params))
        return (days[0], days[-1]) if days else None

    @classmethod
    @abc.abstractmethod
    def validate_parameters(cls, dataset: str, params: dict[str, Any], subject: str = "job group") -> dict[str, Any]:
        """Check a group's parameters template for ``dataset``; returns them normalized."""

    # -- running --------------------------------------------------------------------------
    @abc.abstractmethod
    def plan(
        self,
        dataset: str,
        params: dict[str, Any],
        interval: Interval,
        *,
        max_units: int,
        business_days: Callable[[date, date], list[date] | None] | None = None,
    ) -> list[FetchUnit]:
        """The cheapest list of fetch units (fewest API requests) for the interval."""

    @abc.abstractmethod
    def fetch(self, dataset: str, unit: FetchUnit) -> FetchResult:
        """Fetch one unit; every HTTP request goes through ``self.acquire`` first."""

    # -- restatement after corporate actions ------------------------------------------------
    def corporate_actions(self, dataset: str, result: FetchResult) -> list[CorporateAction]:
        """The events in a fetch's answer that make the source restate earlier history of
        ``dataset`` (the source decides what counts). Default: what ``fetch`` put in ``actions``."""
        return list(result.actions)

    def fetch_history(self, dataset: str, code: str, start: date, end: date) -> FetchResult:
        """``code``'s rows of ``dataset`` for ``[start, end]`` as the source serves them now, at the
        fewest requests (every one through ``self.acquire``). Sources that restate implement it."""
        raise NotImplementedError(f"{type(self).__name__} cannot re-fetch {dataset} history by code")

    @abc.abstractmethod
    def validate_credentials(self, dataset: str | None = None) -> None:
        """One cheap call; raises AuthError / PlanNotCoveredError / RetryableSourceError."""
