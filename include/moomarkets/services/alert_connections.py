"""Alert targets name Airflow Connections (the SMTP server, the webhook URL, the token live there):
a config naming one Airflow does not have is refused before anything is written, since its alerts
could never go out. When Airflow cannot be asked at all, the change is not blocked: it is written
with a note saying what was not checked.
"""

from __future__ import annotations

from typing import Any

from moomarkets.airflow import connections
from moomarkets.config.alerts import target_conn_ids, validate_alerts
from moomarkets.errors import ConfigError
from moomarkets.services.effects import Outcome

# the Airflow connection type each target type is sent through (for the hint in the error)
CONN_TYPES = {"email": "smtp", "slack": "slackwebhook", "webhook": "http"}


def check_alert_connections(alerts: Any, *, subject: str | None, airflow: bool = True) -> Outcome[None]:
    """Check that every Connection ``alerts`` names exists; ConfigError naming the first that does not.

    ``alerts`` is validated first (the same error the store would give). With ``airflow`` False
    (the CLI's ``--no-airflow``) Airflow is not asked and a note says so.
    """
    validated = validate_alerts(alerts, subject=subject)
    targets = validated.get("targets", [])
    out: Outcome[None] = Outcome()
    if not targets:
        return out
    if not airflow:
        out.notes.append(f"Alert connections of {subject} not checked (Airflow not asked): "
                         f"{', '.join(target_conn_ids(validated))}.")
        return out
    seen: dict[str, bool | None] = {}
    for i, target in enumerate(targets):
        conn_id = target["conn_id"]
        if conn_id not in seen:
            # looked up on the module at call time, so a test can stand in for Airflow
            seen[conn_id] = connections.connection_exists(conn_id)
        if seen[conn_id] is False:
            raise ConfigError(
                f"Airflow connection {conn_id!r} does not exist (create it with `airflow connections add {conn_id}"
                f" --conn-type {CONN_TYPES[target['type']]} ...`)",
                field=f"alerts.targets[{i}]", subject=subject,
            )
    unknown = sorted(c for c, exists in seen.items() if exists is None)
    if unknown:
        out.notes.append(f"Could not ask Airflow whether connection(s) {', '.join(unknown)} exist; alerts of {subject}"
                         " go out only once they do.")
    return out
