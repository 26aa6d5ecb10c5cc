"""Best-effort Airflow side effects, and the Outcome that carries what to tell the user.

The config tables are the source of truth: a change is committed first, then Airflow is told
(pools created or resized, DAGs paused or unpaused). When Airflow cannot be told, the change
stands and the user gets a warning that says what to do; nothing is rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from moomarkets.airflow import ops, pools
from moomarkets.config.models import DataSource
from moomarkets.errors import describe

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What a service call did: its ``value`` and the lines for the user.

    ``done``: Airflow side effects that happened (the CLI prints them, pages do not).
    ``notes``: what is worth knowing ("the DAG appears at the next parse").
    ``warnings``: side effects that failed; the change itself is saved.
    """

    value: T | None = None
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Notes, then warnings: what a page or an API answer shows after the change."""
        return [*self.notes, *self.warnings]

    def add(self, other: Outcome[Any]) -> Outcome[T]:
        """Append another outcome's lines (its value is dropped)."""
        self.done.extend(other.done)
        self.notes.extend(other.notes)
        self.warnings.extend(other.warnings)
        return self


def sync_pools(sources: list[DataSource]) -> Outcome[None]:
    """Create or resize the sources' Airflow pools."""
    out: Outcome[None] = Outcome()
    if not sources:
        return out
    try:
        # looked up on the module at call time, so a test can stand in for Airflow's pool table
        for name, slots, action in pools.sync_pools(sources):
            out.done.append(f"pool {name}: {slots} slot(s), {action}")
    except Exception as exc:  # noqa: BLE001 - Airflow's metadata DB unreachable or not migrated
        log.warning("Airflow pools of %s not synced: %s", ", ".join(s.code for s in sources), exc)
        out.warnings.append(
            f"Airflow pools not synced ({describe(exc)}); run `moomarkets pools sync` where Airflow's"
            " metadata DB is reachable."
        )
    return out


def set_paused(dag_id: str, paused: bool) -> Outcome[None]:
    """Pause or unpause a group's DAG. A DAG not parsed yet is created in the right state anyway."""
    out: Outcome[None] = Outcome()
    try:
        found = ops.set_paused(dag_id, paused)
    except Exception as exc:  # noqa: BLE001 - the config change stands; say what is left to do
        log.warning("could not set DAG %s paused=%s: %s", dag_id, paused, exc)
        consequence = (
            "its runs are skipped while the group is disabled anyway" if paused else "unpause it in Airflow"
        )
        out.warnings.append(
            f"Could not {'pause' if paused else 'unpause'} DAG {dag_id} in Airflow ({describe(exc)});"
            f" {consequence}."
        )
        return out
    if found:
        out.done.append(f"DAG {dag_id} {'paused' if paused else 'unpaused'} in Airflow")
    else:
        out.notes.append(f"DAG {dag_id} is not parsed yet; it will start {'paused' if paused else 'active'}.")
    return out
