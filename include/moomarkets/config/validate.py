"""Validation of data sources and job groups: one specific, one-line error per problem.

The same checks serve the CLI, YAML import, the DAG factory (a bad group becomes a visible
placeholder) and the UI (``ConfigError.field`` names the form field).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from moomarkets.config.alerts import CONN_ID, validate_alerts
from moomarkets.config.checks import dataset_checks, validate_checks
from moomarkets.config.durations import format_duration, parse_duration
from moomarkets.config.models import DEFAULT_UPSTREAM_TIMEOUT, DataSource, JobGroup
from moomarkets.errors import ConfigError

SLUG_SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SLUG_GROUP = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Names the management UI uses as path segments (/groups/new, /sources/new): never a slug.
RESERVED_NAMES = frozenset({"new"})
# DAGs the package ships besides the groups' own (dags/): a group of that name would collide with them.
SHIPPED_DAG_IDS = frozenset({"moomarkets_watchdog", "example_market_breadth"})
SECRET_HINTS = ("key", "password", "secret", "token", "credential")
MAX_TEXT = 2000
MAX_UPSTREAMS = 20


def _text(value: Any, field: str, subject: str, *, required: bool = True, max_len: int = MAX_TEXT) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConfigError(f"must be text, got {type(value).__name__}", field=field, subject=subject)
    value = value.strip()
    if required and not value:
        raise ConfigError("must not be empty", field=field, subject=subject)
    if len(value) > max_len:
        raise ConfigError(f"is longer than {max_len} characters", field=field, subject=subject)
    if "\x00" in value:
        raise ConfigError("contains a NUL character", field=field, subject=subject)
    return value


def _bool(value: Any, field: str, subject: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", field=field, subject=subject)
    return value


def validate_cron(schedule: Any, subject: str = "group") -> str:
    """Check a five-field cron expression (or an @preset) and return it normalized."""
    from croniter import croniter

    text = _text(schedule, "schedule", subject)
    if text.startswith("@"):
        if text not in {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}:
            raise ConfigError(f"unknown cron preset {text!r}", field="schedule", subject=subject)
        return text
    if len(text.split()) != 5:
        raise ConfigError(
            f"{text!r} is not a cron expression with 5 fields (minute hour day month weekday)",
            field="schedule",
            subject=subject,
        )
    if not croniter.is_valid(text):
        raise ConfigError(f"{text!r} is not a valid cron expression", field="schedule", subject=subject)
    return " ".join(text.split())


def validate_timezone(tz: Any, subject: str = "group") -> str:
    text = _text(tz or "UTC", "timezone", subject)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown IANA timezone {text!r}", field="timezone", subject=subject) from None
    return text


def validate_depends_on(value: Any, *, name: str | None = None, subject: str | None = None) -> list[str]:
    """A group's upstream names from a list or a comma-separated string (``""`` clears), order kept.

    Only what one group can tell: whether the upstreams exist and form no cycle needs every group
    (``config.dependencies.check_dependencies``).
    """
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of job group names", field="depends_on", subject=subject)
    out: list[str] = []
    for upstream in (v.strip() for v in value):
        if not SLUG_GROUP.match(upstream):
            raise ConfigError(f"{upstream!r} is not a job group name", field="depends_on", subject=subject)
        if upstream == name:
            raise ConfigError("a group cannot depend on itself", field="depends_on", subject=subject)
        if upstream in out:
            raise ConfigError(f"{upstream!r} is listed twice", field="depends_on", subject=subject)
        out.append(upstream)
    if len(out) > MAX_UPSTREAMS:
        raise ConfigError(f"at most {MAX_UPSTREAMS} upstream groups", field="depends_on", subject=subject)
    return out


def validate_upstream_timeout(value: Any, subject: str | None = None) -> str:
    """How long a run waits for its upstreams (1m .. 7d), normalized (``90m`` -> ``1h30m``); blank: 6h."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_UPSTREAM_TIMEOUT
    waited = parse_duration(value, field="upstream_timeout", subject=subject, minimum=timedelta(minutes=1),
                            maximum=timedelta(days=7))
    return format_duration(waited)


def next_runs(schedule: str, timezone: str, count: int = 3, after: datetime | None = None) -> list[datetime]:
    """The next ``count`` cron fire times in ``timezone`` (for ``groups validate``)."""
    from croniter import croniter

    tz = ZoneInfo(timezone)
    start = (after or datetime.now(tz)).astimezone(tz)
    it = croniter(schedule, start)
    return [it.get_next(datetime) for _ in range(count)]


def validate_source(src: DataSource) -> DataSource:
    """Check a data source definition; returns a normalized copy. Raises ConfigError."""
    from moomarkets.sources.registry import get_source_class, source_kinds

    subject = f"data source {src.code!r}" if isinstance(src.code, str) else "data source"
    code = _text(src.code, "code", subject, max_len=40)
    if not SLUG_SOURCE.match(code):
        raise ConfigError(
            f"{code!r} must be lower-case letters, digits and _ and start with a letter",
            field="code",
            subject=subject,
        )
    if code in RESERVED_NAMES:
        raise ConfigError(f"{code!r} is reserved (the UI uses it as a page name)", field="code", subject=subject)
    name = _text(src.name, "name", subject, max_len=200)
    kind = _text(src.kind, "kind", subject, max_len=40)
    if kind not in source_kinds():
        raise ConfigError(
            f"unknown kind {kind!r} (known: {', '.join(sorted(source_kinds()))})", field="kind", subject=subject
        )
    conn_id = _text(src.conn_id, "conn_id", subject, max_len=250)
    if not CONN_ID.match(conn_id):
        raise ConfigError(f"{conn_id!r} is not a valid Airflow connection id", field="conn_id", subject=subject)
    if not isinstance(src.config, dict):
        raise ConfigError("must be a mapping", field="config", subject=subject)
    for key in src.config:
        if any(h in str(key).lower() for h in SECRET_HINTS):
            raise ConfigError(
                f"{key!r} looks like a secret; put credentials in the Airflow Connection {conn_id!r}",
                field="config",
                subject=subject,
            )
    config = get_source_class(kind).validate_config(dict(src.config), subject=subject)
    return DataSource(
        code=code,
        name=name,
        kind=kind,
        conn_id=conn_id,
        description=_text(src.description, "description", subject, required=False),
        is_active=_bool(src.is_active, "is_active", subject),
        config=config,
        alerts=validate_alerts(src.alerts, subject=subject),
    )


def validate_group(group: JobGroup, source: DataSource | None, *, require_active: bool = False) -> JobGroup:
    """Check a job group against its data source; returns a normalized copy. Raises ConfigError.

    Its upstreams are checked by name only here; that they exist and form no cycle needs every group
    (``config.dependencies``), which the config store checks when it writes.
    """
    from moomarkets.sources.registry import get_source_class

    subject = f"job group {group.name!r}" if isinstance(group.name, str) else "job group"
    name = _text(group.name, "name", subject, max_len=63)
    if not SLUG_GROUP.match(name):
        raise ConfigError(
            f"{name!r} must be lower-case letters, digits and _, start with a letter, at most 63 characters",
            field="name",
            subject=subject,
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"{name!r} is reserved (the UI uses it as a page name)", field="name", subject=subject)
    if name in SHIPPED_DAG_IDS:
        raise ConfigError(f"{name!r} is reserved (a DAG shipped with MooMarkets has that id)", field="name",
                          subject=subject)
    if source is None:
        raise ConfigError(f"unknown data source {group.data_source!r}", field="data_source", subject=subject)
    if require_active and not source.is_active:
        raise ConfigError(f"data source {source.code!r} is not active", field="data_source", subject=subject)
    cls = get_source_class(source.kind)
    dataset = _text(group.dataset, "dataset", subject, max_len=60)
    if dataset not in cls.datasets:
        raise ConfigError(
            f"source {source.code!r} ({source.kind}) has no dataset {dataset!r} "
            f"(it has: {', '.join(sorted(cls.datasets))})",
            field="dataset",
            subject=subject,
        )
    if not isinstance(group.parameters, dict):
        raise ConfigError("must be a mapping", field="parameters", subject=subject)
    params = dict(group.parameters)
    # data checks after every load (config.checks): validated first, kept out of the source's view
    checks = None
    if "checks" in params:
        checks = validate_checks(params.pop("checks"), dataset_checks(dataset), dataset=dataset, kind=source.kind,
                                 subject=subject)
    parameters = cls.validate_parameters(dataset, params, subject=subject)
    if checks:
        parameters = {**parameters, "checks": checks}
    return JobGroup(
        name=name,
        data_source=source.code,
        dataset=dataset,
        schedule=validate_cron(group.schedule, subject),
        description=_text(group.description, "description", subject, required=False),
        timezone=validate_timezone(group.timezone, subject),
        parameters=parameters,
        is_enabled=_bool(group.is_enabled, "is_enabled", subject),
        depends_on=validate_depends_on(group.depends_on, name=name, subject=subject),
        upstream_timeout=validate_upstream_timeout(group.upstream_timeout, subject),
        alerts=validate_alerts(group.alerts, subject=subject),
    )
