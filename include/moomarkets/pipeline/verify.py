"""Verify (and repair) a job group's date range against its source, as a plain function (no Airflow).

The range is planned with the source's own planner (the same units a load of that range would
fetch, so a verify costs exactly the planned requests), each unit (or ``sample`` of them, chosen
with a printed seed) is fetched through the shared rate limit and normalized as a load would, and
the rows are compared with the warehouse in SQL (``warehouse.verifications.compare_rows``). With
``repair`` the unit's source rows are upserted in the same transaction (missing and mismatched
rows; extra rows are only reported unless ``delete_extra``) and counted in the ``verifications``
record.
"""

from __future__ import annotations

import logging
import random
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from moomarkets.errors import AuthError, PlanNotCoveredError, UsageError, scrub
from moomarkets.pipeline.group import GroupPipeline
from moomarkets.pipeline.run import calendar_lookup
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.warehouse import loads
from moomarkets.warehouse import verifications as store
from moomarkets.warehouse.db import connect

if TYPE_CHECKING:
    from moomarkets.ratelimit import SourceRateLimiter

log = logging.getLogger(__name__)

MAX_UNITS = 1024  # units a range is planned into (as [core] max_map_length caps a run)
MAX_RANGE_DAYS = 3660
ADJUSTED_PREFIX = "adj_"  # a row whose only differences are in these columns is "stale adjusted"
DETAIL_LIMIT = 200  # keys listed per kind per unit in the report (counts are always exact)
RECORD_DETAIL_LIMIT = 10  # ... and in the verifications record (details jsonb)
RECORD_UNITS_LIMIT = 100  # units with differences kept in the record's details
ERROR_TEXT_MAX = 2000
KINDS = ("missing", "extra", "mismatched", "stale_adjusted")


@dataclass
class UnitReport:
    key: str
    requests: int = 0
    source_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    stale_adjusted: list[dict[str, Any]] = field(default_factory=list)
    repaired: int = 0
    deleted: int = 0
    remaining: dict[str, int] | None = None  # differences left after a repair
    error: str | None = None

    @property
    def equal(self) -> bool:
        return self.error is None and not any(self.counts.values())

    @property
    def equal_now(self) -> bool:
        """Equal after this run: no error and no difference left (after the repair, if any)."""
        left = self.remaining if self.remaining is not None else self.counts
        return self.error is None and not any(left.values())

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.key, "requests": self.requests, "source_rows": self.source_rows,
                               **{f"{k}_count": v for k, v in self.counts.items()}}
        for kind in KINDS:
            items = getattr(self, kind)
            out[kind] = items if limit is None else items[:limit]
        if self.remaining is not None:
            out["repaired"] = self.repaired
            out["deleted"] = self.deleted
            out["remaining"] = self.remaining
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class VerifyReport:
    group: str
    source: str
    dataset: str
    date_from: date
    date_to: date
    planned_units: int
    sample: int | None = None
    seed: int | None = None
    repair: bool = False
    delete_extra: bool = False
    units: list[UnitReport] = field(default_factory=list)
    verification_id: int | None = None

    def total(self, kind: str) -> int:
        return sum(u.counts[kind] for u in self.units)

    @property
    def requests(self) -> int:
        return sum(u.requests for u in self.units)

    @property
    def repaired(self) -> int:
        return sum(u.repaired for u in self.units)

    @property
    def deleted(self) -> int:
        return sum(u.deleted for u in self.units)

    @property
    def failed_units(self) -> list[UnitReport]:
        return [u for u in self.units if u.error]

    @property
    def equal(self) -> bool:
        """Source and warehouse were equal before any repair (every unit verified)."""
        return all(u.equal for u in self.units)

    @property
    def ok(self) -> bool:
        """Equal now: before the repair, or made equal by it (the command's exit code 0)."""
        return all(u.equal_now for u in self.units)

    @property
    def status(self) -> str:
        if self.failed_units:
            return "failed"
        if self.equal:
            return "equal"
        return "repaired" if self.repair and self.ok else "different"

    def summary(self) -> dict[str, Any]:
        return {
            "group": self.group, "source": self.source, "dataset": self.dataset,
            "from": self.date_from.isoformat(), "to": self.date_to.isoformat(),
            "planned_units": self.planned_units, "verified_units": len(self.units),
            "sample": self.sample, "seed": self.seed, "repair": self.repair, "delete_extra": self.delete_extra,
            "requests": self.requests,
            "source_rows": sum(u.source_rows for u in self.units),
            **{k: self.total(k) for k in KINDS},
            "failed_units": len(self.failed_units), "repaired": self.repaired, "deleted": self.deleted,
            "status": self.status, "equal": self.equal, "ok": self.ok, "verification_id": self.verification_id,
        }

    def to_dict(self, limit: int | None = DETAIL_LIMIT) -> dict[str, Any]:
        return {**self.summary(), "units": [u.to_dict(limit) for u in self.units]}

    def record_details(self) -> dict[str, Any]:
        """The capped sample of differences kept in the verifications record."""
        units = [u.to_dict(RECORD_DETAIL_LIMIT) for u in self.units if not u.equal]
        return {"units": units[:RECORD_UNITS_LIMIT], "units_with_differences": len(units),
                "unit_keys": [u.key for u in self.units][:1000]}


def range_interval(pipe: GroupPipeline, date_from: date, date_to: date) -> Interval:
    """The interval holding the closes of the trading days ``date_from..date_to``: from the first
    day's midnight to the midnight after the last, in the market's timezone (the source's
    ``trading_day_close``, which every source has)."""
    tz = ZoneInfo(pipe.source_class.trading_day_close(pipe.group.dataset, pipe.group.parameters)[0])
    return Interval(datetime.combine(date_from, time(0), tz), datetime.combine(date_to + timedelta(days=1), time(0), tz))


def check_range(date_from: date, date_to: date, sample: int | None) -> None:
    if date_from > date_to:
        raise UsageError(f"--to ({date_to}) is before --from ({date_from})")
    if (date_to - date_from).days >= MAX_RANGE_DAYS:
        raise UsageError(f"a verify covers at most {MAX_RANGE_DAYS} days; split the range")
    if sample is not None and sample < 1:
        raise UsageError(f"--sample must be a positive number of units, got {sample}")


def plan(
    pipe: GroupPipeline, date_from: date, date_to: date, *, url: str, max_units: int = MAX_UNITS
) -> list[FetchUnit]:
    """The units a load of ``date_from..date_to`` would fetch (the source's own cheapest plan)."""
    return pipe.source().plan(
        pipe.group.dataset,
        pipe.group.parameters,
        range_interval(pipe, date_from, date_to),
        max_units=max_units,
        business_days=calendar_lookup(url, pipe.source_code),
    )


def choose_sample(units: list[FetchUnit], sample: int | None, seed: int | None) -> tuple[list[FetchUnit], int | None]:
    """``sample`` units picked with ``seed`` (a new one when None), in plan order; all when no sample."""
    if sample is None:
        return list(units), seed
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    if sample >= len(units):
        return list(units), seed
    picked = sorted(random.Random(seed).sample(range(len(units)), sample))
    return [units[i] for i in picked], seed


def unit_scope(source_code: str, unit: FetchUnit) -> store.Scope:
    """The warehouse rows a unit's fetch covers, from the planners' parameter names
    (``dates``; ``from``/``to`` or ``start``/``end``; ``codes`` or ``tickers``)."""
    p = unit.params
    as_date = date.fromisoformat
    dates = tuple(as_date(d) for d in p["dates"]) if "dates" in p else None
    lo, hi = p.get("from", p.get("start")), p.get("to", p.get("end"))
    codes = p.get("codes", p.get("tickers"))
    return store.Scope(
        source=source_code,
        dates=dates,
        date_from=as_date(lo) if lo else None,
        date_to=as_date(hi) if hi else None,
        codes=tuple(str(c) for c in codes) if codes else None,
    )


def _split(report: UnitReport, cmp: store.Comparison, limit: int) -> None:
    stale = [m for m in cmp.mismatched if all(c.startswith(ADJUSTED_PREFIX) for c in m["columns"])]
    values = [m for m in cmp.mismatched if not all(c.startswith(ADJUSTED_PREFIX) for c in m["columns"])]
    report.source_rows = cmp.source_rows
    report.counts = {"missing": len(cmp.missing), "extra": len(cmp.extra), "mismatched": len(values),
                     "stale_adjusted": len(stale)}
    report.missing, report.extra = cmp.missing[:limit], cmp.extra[:limit]
    report.mismatched, report.stale_adjusted = values[:limit], stale[:limit]


def _counts(cmp: store.Comparison) -> dict[str, int]:
    stale = sum(1 for m in cmp.mismatched if all(c.startswith(ADJUSTED_PREFIX) for c in m["columns"]))
    return {"missing": len(cmp.missing), "extra": len(cmp.extra), "mismatched": len(cmp.mismatched) - stale,
            "stale_adjusted": stale}


def verify_range(
    pipe: GroupPipeline,
    date_from: date,
    date_to: date,
    *,
    url: str,
    credentials: Credentials,
    sample: int | None = None,
    seed: int | None = None,
    repair: bool = False,
    delete_extra: bool = False,
    via: str = "cli",
    max_units: int = MAX_UNITS,
    limiter: SourceRateLimiter | None = None,
    detail_limit: int = DETAIL_LIMIT,
) -> VerifyReport:
    """Verify the group's ``date_from..date_to`` (trading days) against its source; see the module doc.

    ``delete_extra`` (with ``repair``) also deletes the extra rows. A unit whose fetch fails is
    reported with its error (the others still verify) and makes the verification "failed"; a
    rejected key or an uncovered plan stops at the first unit. Anything else that breaks (the
    warehouse) closes the record as "failed" with the error and is raised.
    """
    check_range(date_from, date_to, sample)
    if delete_extra and not repair:
        raise UsageError("--delete-extra is part of a repair: give --repair too")
    planned = plan(pipe, date_from, date_to, url=url, max_units=max_units)
    units, seed = choose_sample(planned, sample, seed)
    report = VerifyReport(
        group=pipe.name, source=pipe.source_code, dataset=pipe.group.dataset, date_from=date_from,
        date_to=date_to, planned_units=len(planned), sample=sample, seed=seed, repair=repair,
        delete_extra=delete_extra,
    )
    with connect(url) as conn, conn.transaction():
        report.verification_id = store.start(
            conn, group_name=pipe.name, source=pipe.source_code, dataset=pipe.group.dataset, date_from=date_from,
            date_to=date_to, sample=sample, seed=seed, repair=repair, delete_extra=delete_extra, units=len(units),
            via=via,
        )
    log.info("verifying %s %s..%s: %d of %d planned unit(s)%s", pipe.name, date_from, date_to, len(units),
             len(planned), f" (sample seed {seed})" if sample is not None else "")
    fatal: str | None = None
    broken: str | None = None  # set when the loop did not finish
    try:
        with ExitStack() as stack:
            if limiter is None and units:
                limiter = pipe.limiter(url)
                stack.callback(limiter.close)
            source = pipe.source(credentials, limiter)
            for unit in units:
                ur = UnitReport(unit.key)
                report.units.append(ur)
                if fatal is not None:
                    ur.error = f"not verified: {fatal}"
                    continue
                try:
                    asked = datetime.now(timezone.utc)  # the as-of of the rows' adjusted values
                    result = source.fetch(pipe.group.dataset, unit)
                except Exception as exc:  # noqa: BLE001 - one unit's failure is reported, the rest still verify
                    ur.error = scrub(f"{type(exc).__name__}: {exc}", credentials.secret)[:ERROR_TEXT_MAX]
                    if isinstance(exc, (AuthError, PlanNotCoveredError)):
                        fatal = ur.error
                    continue
                ur.requests = result.requests
                if result.item_errors:  # an incomplete fetch proves nothing about the missing items
                    ur.error = scrub("item(s) failed: " + "; ".join(
                        f"{k}: {v}" for k, v in sorted(result.item_errors.items())), credentials.secret)[:ERROR_TEXT_MAX]
                    continue
                _verify_unit(pipe, unit, result.rows, ur, url=url, repair=repair, delete_extra=delete_extra,
                             asked=asked, verification_id=report.verification_id, limit=detail_limit)
    except BaseException as exc:
        broken = scrub(f"{type(exc).__name__}: {exc}", credentials.secret)[:ERROR_TEXT_MAX]
        if report.units and report.units[-1].error is None:  # the unit it broke in
            report.units[-1].error = f"stopped: {broken}"
        raise
    finally:
        failed = report.failed_units
        errors = [f"{u.key}: {u.error}" for u in failed] or ([f"stopped: {broken}"] if broken else [])
        with connect(url) as conn, conn.transaction():
            store.finish(
                conn, report.verification_id, status="failed" if broken else report.status,
                units_failed=len(failed) + (len(units) - len(report.units) if broken else 0),
                requests=report.requests, source_rows=sum(u.source_rows for u in report.units),
                **{k: report.total(k) for k in KINDS}, details=report.record_details(),
                error="; ".join(errors)[:ERROR_TEXT_MAX] or None,
            )
    return report


def _verify_unit(
    pipe: GroupPipeline, unit: FetchUnit, rows: list[dict[str, Any]], ur: UnitReport, *, url: str, repair: bool,
    delete_extra: bool, asked: datetime, verification_id: int, limit: int,
) -> None:
    """Compare (and with ``repair`` upsert, then compare again) one unit in one transaction."""
    scope = unit_scope(pipe.source_code, unit)
    # the value columns the source fills (a bookkeeping column it never sends is not "different")
    columns = [c for c in pipe.dataset.value_columns if any(c in r for r in rows)] if rows else None
    with connect(url) as conn, conn.transaction():
        cmp = store.compare_rows(conn, pipe.dataset, rows, scope, columns=columns)
        _split(ur, cmp, limit)
        if not repair:
            return
        if cmp.missing or cmp.mismatched or (delete_extra and cmp.extra):
            if cmp.missing or cmp.mismatched:
                ur.repaired = loads.upsert_rows(conn, pipe.dataset, rows, as_of=asked)
            if delete_extra:
                ur.deleted = store.delete_extra(conn, pipe.dataset, scope, cmp.extra)
            store.add_repaired(conn, verification_id, ur.repaired, ur.deleted)
            after = store.compare_rows(conn, pipe.dataset, rows, scope, columns=columns)
            ur.remaining = _counts(after)
        else:
            ur.remaining = dict(ur.counts)
    if ur.repaired or ur.deleted:
        log.info("repaired %s: %d row(s) upserted, %d deleted", unit.key, ur.repaired, ur.deleted)
