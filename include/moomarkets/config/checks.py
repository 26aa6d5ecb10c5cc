"""Data checks after every load: the catalog of check kinds, their thresholds and severities, and
the validation of a group's ``parameters.checks`` (no Airflow, no database).

What each dataset runs is declared beside its table definition (``warehouse.datasets``: each
``Dataset.checks``); the SQL lives in ``warehouse.checks``. This module sits in the config layer so
``config.validate`` can check a group's overrides with one specific error per problem.

A group overrides a declared check under its parameters key ``checks``::

    {"checks": {"row_count_drop": {"severity": "error", "max_drop": 0.02},
                "completeness": {"severity": "warn"}, "adjusted_consistency": {"severity": "off"}}}

Severity ``error`` fails the run (after its rows are loaded), ``warn`` only records, ``off`` skips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from moomarkets.errors import ConfigError

SEVERITIES = ("error", "warn", "off")


@dataclass(frozen=True)
class Threshold:
    name: str
    kind: type  # int or float
    minimum: float
    maximum: float
    doc: str


@dataclass(frozen=True)
class CheckKind:
    """One kind of check: what it tests and which thresholds a group may set."""

    name: str
    description: str
    thresholds: tuple[Threshold, ...] = ()

    def threshold(self, name: str) -> Threshold | None:
        return next((t for t in self.thresholds if t.name == name), None)


CHECK_KINDS: dict[str, CheckKind] = {
    k.name: k
    for k in (
        CheckKind(
            "price_sanity",
            "low <= open, close <= high; prices > 0; volume >= 0; prices null only on a no-trade row",
        ),
        CheckKind(
            "completeness",
            "every listed issue present on each business day (listed_info when loaded for the day, else the "
            "previous business day's issues); no rows on closed days",
            (Threshold("max_missing", int, 0, 1_000_000, "missing issue-days (and closed-day rows) tolerated"),),
        ),
        CheckKind(
            "adjusted_consistency",
            "adj_* = raw x the product of later adjustment factors, within the source's rounding",
            (Threshold("tolerance", float, 0, 1_000_000, "absolute difference allowed (default: the source's rounding)"),),
        ),
        CheckKind(
            "row_count_drop",
            "rows of each day against the previous business day's: fails on a drop beyond max_drop",
            (Threshold("max_drop", float, 0, 1, "largest allowed drop as a fraction (0.05 = 5 %)"),),
        ),
    )
}


@dataclass(frozen=True)
class Check:
    """A check a dataset runs after every load, with its default severity and thresholds.

    ``kinds``: the source kinds it applies to (None: every source of the dataset).
    """

    name: str
    severity: str
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:  # a bad declaration is a programming error: fail at import
        assert self.name in CHECK_KINDS, self.name
        assert self.severity in SEVERITIES, self.severity
        assert all(CHECK_KINDS[self.name].threshold(t) for t in self.thresholds), self.thresholds

    def applies_to(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def resolve(self, override: Mapping[str, Any] | None) -> Check:
        """This check with a group's (validated) override applied."""
        if not override:
            return self
        thresholds = {**self.thresholds, **{k: v for k, v in override.items() if k != "severity"}}
        return Check(self.name, override.get("severity", self.severity), thresholds, self.kinds)


def validate_checks(
    raw: Any, declared: tuple[Check, ...], *, dataset: str, kind: str, subject: str = "job group"
) -> dict[str, dict[str, Any]]:
    """Check a group's ``parameters.checks`` against the checks its dataset declares; returns them
    normalized. Raises one ConfigError naming the field (unknown check, bad severity, bad threshold)."""
    base = "parameters.checks"
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of check name to {severity, thresholds}", field=base, subject=subject)
    available = {c.name: c for c in declared if c.applies_to(kind)}
    out: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        where = f"{base}.{name}"
        if name not in available:
            known = ", ".join(sorted(available)) or "none"
            raise ConfigError(
                f"unknown check {name!r} for dataset {dataset!r} of a {kind} source (checks: {known})",
                field=where, subject=subject,
            )
        if not isinstance(body, dict):
            raise ConfigError("must be a mapping such as {severity: warn}", field=where, subject=subject)
        spec = CHECK_KINDS[name]
        norm: dict[str, Any] = {}
        for key, value in body.items():
            if key == "severity":
                if value not in SEVERITIES:
                    raise ConfigError(f"must be one of {', '.join(SEVERITIES)}, got {value!r}",
                                      field=f"{where}.severity", subject=subject)
                norm[key] = value
                continue
            th = spec.threshold(str(key))
            if th is None:
                allowed = ", ".join(["severity", *(t.name for t in spec.thresholds)])
                raise ConfigError(f"unknown setting {key!r} (allowed: {allowed})", field=where, subject=subject)
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if th.kind is int:
                ok_type = isinstance(value, int) and not isinstance(value, bool)
            if not ok_type or not th.minimum <= value <= th.maximum:
                what = "an integer" if th.kind is int else "a number"
                raise ConfigError(f"must be {what} from {th.minimum:g} to {th.maximum:g}, got {value!r}",
                                  field=f"{where}.{key}", subject=subject)
            norm[key] = th.kind(value)
        out[name] = norm
    return out


def describe(declared: tuple[Check, ...], kind: str | None = None) -> list[str]:
    """Human lines for the defaults a dataset declares (docs, CLI)."""
    lines = []
    for c in declared:
        if kind is not None and not c.applies_to(kind):
            continue
        extra = "".join(f", {k}={v}" for k, v in c.thresholds.items())
        lines.append(f"{c.name}: {c.severity}{extra}")
    return lines


# What each dataset checks after every load, with the defaults. ``warehouse.datasets`` hands these
# to each table definition (``Dataset.checks``); they live here, in the config layer, because group
# validation (``config.validate``) must know them and may not import the warehouse.
DATASET_CHECKS: dict[str, tuple[Check, ...]] = {
    "daily_quotes": (
        Check("price_sanity", "error"),
        # Yahoo checks every ticker against its exchange's calendar in the source itself
        Check("completeness", "error", {"max_missing": 0}, kinds=("jquants",)),
        Check("adjusted_consistency", "error"),
        Check("row_count_drop", "warn", {"max_drop": 0.05}),
    ),
    "index_quotes": (
        Check("price_sanity", "error"),
        Check("completeness", "error", {"max_missing": 0}),
        Check("row_count_drop", "warn", {"max_drop": 0.05}),
    ),
    "listed_info": (
        Check("row_count_drop", "warn", {"max_drop": 0.05}),
    ),
}


def dataset_checks(dataset: str) -> tuple[Check, ...]:
    return DATASET_CHECKS.get(dataset, ())
