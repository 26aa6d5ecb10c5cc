"""Typed records for the two config tables (no Airflow, no database)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DataSource:
    """A row of ``data_sources``. Secrets are never here: ``conn_id`` names the Airflow Connection."""

    code: str
    name: str
    kind: str
    conn_id: str
    description: str = ""
    is_active: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, Any] = field(default_factory=dict)  # defaults for its groups (see config.alerts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_UPSTREAM_TIMEOUT = "6h"  # how long a run waits for its upstream groups unless the group says


@dataclass
class JobGroup:
    """A row of ``job_groups``; ``data_source`` is the source's code."""

    name: str
    data_source: str
    dataset: str
    schedule: str
    description: str = ""
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict)
    is_enabled: bool = True
    depends_on: list[str] = field(default_factory=list)  # upstream group names
    upstream_timeout: str = DEFAULT_UPSTREAM_TIMEOUT  # how long a run waits for its upstreams, then fails
    alerts: dict[str, Any] = field(default_factory=dict)  # overrides the source's alert defaults

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GroupSpec:
    """Everything the DAG factory needs to build one group's DAG: the group and its source.

    It is what the parse-time read returns and what the last-known-good snapshot stores.
    """

    group: JobGroup
    source: DataSource | None  # None when the group's source row is missing

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group.to_dict(), "source": self.source.to_dict() if self.source else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupSpec:
        src = data.get("source")
        return cls(group=JobGroup(**data["group"]), source=DataSource(**src) if src else None)
