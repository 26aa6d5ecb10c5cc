"""Alert settings of a data source (defaults) and a job group (overrides): shape and validation.

```yaml
alerts:
  on: [failure, partial, check_errors, late]   # which kinds to send (default: all four)
  late_after: 2h                                # late = no complete load of an interval by its close + 2h
  targets:                                      # each names an Airflow Connection (secrets stay there)
    - {type: email, conn_id: smtp_alerts, to: [data-oncall@example.com]}
    - {type: slack, conn_id: slack_alerts}                       # Slack incoming webhook
    - {type: webhook, conn_id: alerts_webhook, endpoint: /hooks/moomarkets}   # JSON POST
```

A group's ``on``, ``late_after`` and ``targets`` each replace its source's when present; ``on: []``
silences a group. No Airflow and no database here: whether the named Connections exist is checked
by the services layer (``moomarkets.services``) before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from moomarkets.config.durations import format_duration, parse_duration
from moomarkets.errors import ConfigError

KINDS = ("failure", "partial", "check_errors", "late")
TARGET_TYPES = ("email", "slack", "webhook")
_KEYS = {"on", "late_after", "targets"}
_TARGET_KEYS = {"email": {"type", "conn_id", "to"}, "slack": {"type", "conn_id"},
                "webhook": {"type", "conn_id", "endpoint"}}
CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")  # an Airflow connection id (sources use it too)
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+$")
MAX_TARGETS = 10


@dataclass(frozen=True)
class AlertTarget:
    type: str  # email | slack | webhook
    conn_id: str  # the Airflow Connection holding the server, webhook URL or token
    to: tuple[str, ...] = ()  # email only
    endpoint: str | None = None  # webhook only: path appended to the Connection's host

    @property
    def label(self) -> str:
        """How the target is named in ``alerts_sent`` and logs (never a secret)."""
        return f"{self.type}:{self.conn_id}"


@dataclass(frozen=True)
class AlertSettings:
    """The effective settings of one group (its source's defaults, overridden by its own keys)."""

    kinds: frozenset[str] = frozenset(KINDS)
    late_after: timedelta | None = None  # None: no lateness alerts
    targets: tuple[AlertTarget, ...] = field(default_factory=tuple)

    def wants(self, kind: str) -> bool:
        return bool(self.targets) and kind in self.kinds and (kind != "late" or self.late_after is not None)


def validate_alerts(value: Any, *, subject: str | None = None) -> dict[str, Any]:
    """Check an ``alerts`` mapping; returns its normalized form (what is stored). Raises ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping (keys: on, late_after, targets)", field="alerts", subject=subject)
    value = on_key(value)
    unknown = set(value) - _KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (allowed: late_after, on, targets)",
                          field="alerts", subject=subject)
    out: dict[str, Any] = {}
    if "on" in value:
        kinds = value["on"]
        if isinstance(kinds, str):
            kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise ConfigError("must be a list of alert kinds", field="alerts.on", subject=subject)
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"unknown alert kind(s) {', '.join(bad)} (known: {', '.join(KINDS)})",
                              field="alerts.on", subject=subject)
        out["on"] = [k for k in KINDS if k in kinds]
    if "late_after" in value and value["late_after"] is not None:
        late = parse_duration(value["late_after"], field="alerts.late_after", subject=subject,
                              minimum=timedelta(minutes=1), maximum=timedelta(days=7))
        out["late_after"] = format_duration(late)
    if "targets" in value:
        targets = value["targets"]
        if not isinstance(targets, list):
            raise ConfigError("must be a list of targets", field="alerts.targets", subject=subject)
        if len(targets) > MAX_TARGETS:
            raise ConfigError(f"at most {MAX_TARGETS} targets", field="alerts.targets", subject=subject)
        out["targets"] = [_target(t, i, subject) for i, t in enumerate(targets)]
    return out


def on_key(alerts: Any) -> Any:
    """YAML 1.1 reads an unquoted ``on:`` key as the boolean true: give it back its name, so that
    ``alerts: {on: [failure]}`` means what it says (an export writes the key quoted)."""
    if isinstance(alerts, dict) and True in alerts and "on" not in alerts:
        return {("on" if k is True else k): v for k, v in alerts.items()}
    return alerts


def _target(value: Any, i: int, subject: str | None) -> dict[str, Any]:
    where = f"alerts.targets[{i}]"
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping with type and conn_id", field=where, subject=subject)
    kind = value.get("type")
    if kind not in TARGET_TYPES:
        raise ConfigError(f"type must be one of {', '.join(TARGET_TYPES)}, got {kind!r}", field=where, subject=subject)
    unknown = set(value) - _TARGET_KEYS[kind]
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} for a {kind} target "
                          f"(allowed: {', '.join(sorted(_TARGET_KEYS[kind]))})", field=where, subject=subject)
    conn_id = value.get("conn_id")
    if not isinstance(conn_id, str) or not CONN_ID.match(conn_id):
        raise ConfigError(f"conn_id {conn_id!r} is not a valid Airflow connection id", field=where, subject=subject)
    out: dict[str, Any] = {"type": kind, "conn_id": conn_id}
    if kind == "email":
        to = value.get("to")
        if isinstance(to, str):
            to = [a.strip() for a in re.split(r"[,;]", to) if a.strip()]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and _EMAIL.match(a) for a in to):
            raise ConfigError(f"to must list one or more e-mail addresses, got {value.get('to')!r}",
                              field=where, subject=subject)
        out["to"] = to
    if kind == "webhook" and value.get("endpoint") is not None:
        endpoint = value["endpoint"]
        if not isinstance(endpoint, str) or len(endpoint) > 500 or any(c.isspace() for c in endpoint):
            raise ConfigError(f"endpoint must be a URL path without spaces, got {endpoint!r}", field=where,
                              subject=subject)
        out["endpoint"] = endpoint
    return out


def effective_alerts(source_alerts: dict[str, Any] | None, group_alerts: dict[str, Any] | None) -> AlertSettings:
    """The settings a group's alerts use: each key of the group's replaces its source's."""
    merged = {**(source_alerts or {}), **(group_alerts or {})}
    norm = validate_alerts(merged)
    late = norm.get("late_after")
    return AlertSettings(
        kinds=frozenset(norm.get("on", KINDS)),
        late_after=parse_duration(late, field="alerts.late_after") if late else None,
        targets=tuple(
            AlertTarget(type=t["type"], conn_id=t["conn_id"], to=tuple(t.get("to", ())), endpoint=t.get("endpoint"))
            for t in norm.get("targets", [])
        ),
    )


def target_conn_ids(alerts: dict[str, Any] | None) -> list[str]:
    """The Airflow Connection ids an ``alerts`` mapping names (for the existence check)."""
    return sorted({t["conn_id"] for t in (alerts or {}).get("targets", []) if isinstance(t, dict) and "conn_id" in t})
