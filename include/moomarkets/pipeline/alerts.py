"""Alerts as the domain sees them: which kinds a run earned, what the message says, when an
interval is late, the claim-send-mark loop that makes each alert go out once, and the watchdog's
re-sending of the stored message when a delivery failed or its sender died.

No Airflow here: the Airflow layer (``moomarkets.airflow.alerts``) passes in the UI's base URL and
a ``send(target, alert)`` callable that drives the provider notifiers. Every text that reaches a
message is built from the warehouse's run record and scrubbed of the secrets the caller knows;
messages are plain strings handed to the notifiers' ``notify()`` (never Jinja-rendered), so a
``{{`` in an error message stays literal.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from moomarkets.config.alerts import AlertSettings, AlertTarget, effective_alerts
from moomarkets.errors import MooMarketsError, scrub
from moomarkets.pipeline.freshness import group_freshness
from moomarkets.warehouse import alerts as ledger
from moomarkets.warehouse.config_store import read_specs
from moomarkets.warehouse.db import connect
from moomarkets.warehouse.dependencies import first_uncovered_day

log = logging.getLogger(__name__)

FIRST_ERROR_MAX = 500
PROBLEMS_MAX = 5


class DeliveryError(MooMarketsError):
    """A target could not be reached; the message is already scrubbed of its Connection's secrets."""


@dataclass(frozen=True)
class Alert:
    """One message in its three renderings (e-mail subject+HTML, Slack text, webhook JSON)."""

    group: str
    kind: str
    key: str  # dedupe key: the run id, or the late trading day
    subject: str
    text: str
    html: str
    payload: dict[str, Any]
    dag_id: str | None = None
    run_id: str | None = None


@dataclass
class Delivery:
    """What happened to one alert per target: sent, failed (with the scrubbed reason) or skipped
    because it was already sent (or is being sent) for this key."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def group_url(base_url: str, group: str) -> str:
    return f"{base_url.rstrip('/')}/moomarkets/groups/{quote(group, safe='')}"


def run_kinds(summary: dict[str, Any]) -> list[str]:
    """The run kinds a closed run earned (``record_run``'s summary).

    ``partial``: some units failed and others loaded. ``check_errors``: a data check of severity
    error failed (may come with ``partial``). ``failure``: the run failed for any other reason (no
    plan, every unit failed, a step did not complete, a restatement failed, a dependency wait
    timed out); a run whose only trouble is failed checks is a ``check_errors`` alert, not both.
    """
    status, problems = summary.get("status"), summary.get("problems") or []
    checks = [p for p in problems if p.startswith("check ")]
    only_checks = bool(problems) and len(checks) == len(problems) and not summary.get("units_failed")
    kinds = []
    if status == "missing" or (status == "failed" and not only_checks):
        kinds.append("failure")
    if status == "partial":
        kinds.append("partial")
    if checks:
        kinds.append("check_errors")
    return kinds


def _days(facts: dict[str, Any]) -> str:
    start, end = facts.get("covers_from"), facts.get("covers_to")
    if start and end:
        return start.isoformat() if start == end else f"{start.isoformat()}..{end.isoformat()}"
    interval_end = facts.get("data_interval_end")
    return (interval_end - timedelta(microseconds=1)).date().isoformat() if interval_end else "(no interval)"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def build_run_alert(
    kind: str,
    *,
    group: str,
    dag_id: str,
    run_id: str,
    facts: dict[str, Any] | None,
    summary: dict[str, Any],
    base_url: str,
    secrets: Iterable[str | None] = (),
    history: dict[str, Any] | None = None,
) -> Alert:
    """The alert of one kind for a run. ``facts`` is the run record (``warehouse.alerts.run_facts``;
    None when the plan task never opened it), ``summary`` what ``record_run`` returned."""
    secrets = tuple(secrets)
    facts = facts or {"status": summary.get("status"), "failed_units": [], "error": "the run was not planned"
                      " (plan_units failed before it opened the run record; see its log)"}
    units = facts["failed_units"]
    first_error = next((u["error"] for u in units if u.get("error")), None) or facts.get("error")
    first_error = scrub(first_error, *secrets)[:FIRST_ERROR_MAX] if first_error else None
    total = facts.get("units_total", summary.get("units_total", 0)) or 0
    failed = facts.get("units_failed", summary.get("units_failed", 0)) or 0
    rows = facts.get("rows_loaded", summary.get("rows_loaded", 0)) or 0
    problems = [scrub(p, *secrets) for p in summary.get("problems") or []]
    if kind == "check_errors":
        problems = [p for p in problems if p.startswith("check ")]
    days = _days(facts)
    headline = {
        "partial": f"{failed} of {total} units failed",
        "check_errors": f"{sum(p.startswith('check ') for p in problems)} data check(s) failed",
        "failure": f"run failed ({failed} of {total} units failed)" if total else "run failed",
    }[kind]
    payload = {
        "group": group, "kind": kind, "dag_id": dag_id, "run_id": run_id,
        "interval_start": _iso(facts.get("data_interval_start")), "interval_end": _iso(facts.get("data_interval_end")),
        "trading_days": days, "history": history, "status": facts.get("status"),
        "units_total": total, "units_failed": failed, "failed_units": [u["unit_key"] for u in units],
        "first_error": first_error, "rows_loaded": rows, "problems": problems[:PROBLEMS_MAX],
        "run_url": run_url(base_url, dag_id, run_id), "group_url": group_url(base_url, group),
    }
    lines = [
        ("Group", group), ("Kind", kind), ("Trading days", days),
        ("Data interval", f"{payload['interval_start'] or '-'} .. {payload['interval_end'] or '-'}"),
        *([("History range", f"{history.get('from')} .. {history.get('to')}")] if history else []),
        ("Units", f"{failed} failed of {total}"),
        *([("Failed units", ", ".join(payload["failed_units"]) + (" ..." if failed > len(units) else ""))]
          if units else []),
        *([("First error", first_error)] if first_error else []),
        ("Rows loaded", f"{rows:,}"),
        *[("Problem", p) for p in payload["problems"]],
    ]
    return _alert(group, kind, run_id, f"{group} {days} — {headline}", lines, payload,
                  (("Airflow run", payload["run_url"]), ("Group page", payload["group_url"])), dag_id, run_id)


def build_late_alert(
    *, group: str, day: date, deadline: datetime, last_complete: date | None, base_url: str,
    dag_id: str | None = None, run_id: str | None = None, missing: list[date] | None = None,
) -> Alert:
    """The alert for a trading day not completely loaded by its deadline (close + run + late_after);
    ``missing`` lists every day the group is late with (``day`` is the latest of them)."""
    dag_url = f"{base_url.rstrip('/')}/dags/{quote(group, safe='')}"
    missing_days = [d.isoformat() for d in sorted(missing or [day])]
    payload = {
        "group": group, "kind": "late", "dag_id": group, "run_id": None, "trading_day": day.isoformat(),
        "missing_days": missing_days,
        "deadline": deadline.astimezone(UTC).isoformat(), "last_complete": _iso(last_complete),
        "run_url": dag_url, "group_url": group_url(base_url, group),
    }
    lines = [
        ("Group", group), ("Kind", "late"), ("Trading day", day.isoformat()),
        ("Deadline", deadline.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Last completely loaded day", payload["last_complete"] or "never"),
        *([("All days not completely loaded", ", ".join(missing_days))] if len(missing_days) > 1 else []),
    ]
    return _alert(group, "late", day.isoformat(),
                  f"{group} {day.isoformat()} — not completely loaded by {lines[3][1]}", lines, payload,
                  (("Airflow DAG", dag_url), ("Group page", payload["group_url"])), dag_id, run_id)


def _alert(group: str, kind: str, key: str, title: str, lines: list[tuple[str, str]], payload: dict[str, Any],
           links: tuple[tuple[str, str], ...], dag_id: str | None, run_id: str | None) -> Alert:
    subject = f"[MooMarkets] {kind}: {title}"
    text = "\n".join([f"*{_slack(subject)}*", *(f"{k}: {_slack(v)}" for k, v in lines),
                      *(f"{k}: <{v}|{v}>" for k, v in links)])
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in lines)
    hrefs = " · ".join(f"<a href=\"{html.escape(v)}\">{html.escape(k)}</a>" for k, v in links)
    body = f"<h3>{html.escape(subject)}</h3><table>{rows}</table><p>{hrefs}</p>"
    return Alert(group, kind, key, subject, text, body, payload, dag_id, run_id)


def _slack(value: str) -> str:
    """Slack's three control characters, escaped as its API asks."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- what to send --------------------------------------------------------------------------------
def settings_for(url: str, group: str) -> AlertSettings | None:
    """The group's effective alert settings read now (None: the group is gone)."""
    with connect(url) as conn:
        found = ledger.alert_config(conn, group)
    return None if found is None else effective_alerts(*found)


def run_alerts(
    url: str, *, group: str, dag_id: str, run_id: str, summary: dict[str, Any], base_url: str,
    secrets: Iterable[str | None] = (), history: dict[str, Any] | None = None,
) -> tuple[AlertSettings | None, list[Alert]]:
    """The alerts a closed run should send under the group's current settings."""
    settings = settings_for(url, group)
    kinds = [k for k in run_kinds(summary) if settings is not None and settings.wants(k)]
    if not kinds:
        return settings, []
    with connect(url) as conn:
        facts = ledger.run_facts(conn, dag_id, run_id)
    return settings, [
        build_run_alert(k, group=group, dag_id=dag_id, run_id=run_id, facts=facts, summary=summary,
                        base_url=base_url, secrets=secrets, history=history)
        for k in kinds
    ]


def deliver(url: str, alert: Alert, targets: Iterable[AlertTarget],
            send: Callable[[AlertTarget, Alert], None]) -> Delivery:
    """Claim, send and mark ``alert`` for each target. A failing target is recorded and logged
    (``send`` raises :class:`DeliveryError` with a scrubbed message) and never stops the others."""
    out = Delivery()
    for target in targets:
        with connect(url) as conn, conn.transaction():
            claimed = ledger.claim(conn, group=alert.group, kind=alert.kind, key=alert.key, target=target.label,
                                   dag_id=alert.dag_id, run_id=alert.run_id, message=to_message(alert, target))
        if claimed is None:
            out.already.append(target.label)
            continue
        _send_and_mark(url, claimed, alert, target, send, out)
    return out


def _send_and_mark(url: str, claimed: int, alert: Alert, target: AlertTarget,
                   send: Callable[[AlertTarget, Alert], None], out: Delivery) -> None:
    try:
        send(target, alert)
    except Exception as exc:  # noqa: BLE001 - one target's failure is recorded, never raised
        reason = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        out.failed[target.label] = reason
        log.warning("alert %s for %s (%s) to %s failed: %s", alert.kind, alert.group, alert.key, target.label,
                    reason)
    else:
        out.sent.append(target.label)
        log.info("alert %s for %s (%s) sent to %s", alert.kind, alert.group, alert.key, target.label)
    with connect(url) as conn, conn.transaction():
        ledger.mark(conn, claimed, "failed" if target.label in out.failed else "sent", out.failed.get(target.label))


def to_message(alert: Alert, target: AlertTarget) -> dict[str, Any]:
    """What ``alerts_sent.message`` keeps to re-send ``alert`` to ``target`` later: the rendered
    texts (already scrubbed) and the target (a Connection id, never its secrets)."""
    return {"subject": alert.subject, "text": alert.text, "html": alert.html, "payload": alert.payload,
            "target": {"type": target.type, "conn_id": target.conn_id, "to": list(target.to),
                       "endpoint": target.endpoint}}


def from_message(row: dict[str, Any]) -> tuple[Alert, AlertTarget]:
    """The alert and target a stored ``alerts_sent`` row names (the inverse of :func:`to_message`)."""
    m, t = row["message"], row["message"]["target"]
    alert = Alert(row["group_name"], row["kind"], row["key"], m["subject"], m["text"], m["html"], m["payload"],
                  row["dag_id"], row["run_id"])
    return alert, AlertTarget(t["type"], t["conn_id"], tuple(t.get("to") or ()), t.get("endpoint"))


def resend_pending(url: str, send: Callable[[AlertTarget, Alert], None]) -> list[dict[str, Any]]:
    """The watchdog's retry: re-send every stored alert whose delivery failed, or whose sender
    left it ``sending`` for ``STALE_CLAIM_MINUTES``, to its target, up to ``MAX_ATTEMPTS`` attempts
    in all, marking each sent or failed. Returns what happened to each row."""
    report = []
    with connect(url) as conn, conn.transaction():
        abandoned = ledger.give_up_abandoned(conn)
        ids = ledger.pending(conn)
    if abandoned:
        log.warning("%d alert(s) abandoned on their last attempt: marked failed", abandoned)
    for alert_id in ids:
        with connect(url) as conn, conn.transaction():
            row = ledger.reclaim(conn, alert_id)
        if row is None:  # taken meanwhile
            continue
        if row["kind"] == "late" and _late_day_loaded(url, row["group_name"], row["key"]):
            with connect(url) as conn, conn.transaction():
                ledger.give_up(conn, alert_id, f"not re-sent: {row['key']} has been completely loaded since")
            report.append({"group": row["group_name"], "kind": "late", "key": row["key"], "target": row["target"],
                           "attempt": row["attempts"], "sent": False, "resolved": True})
            continue
        out = Delivery()
        try:
            alert, target = from_message(row)
        except (KeyError, TypeError) as exc:  # a row without a stored message cannot be re-sent
            with connect(url) as conn, conn.transaction():
                ledger.mark(conn, alert_id, "failed", f"not re-sent: no stored message ({type(exc).__name__})")
            continue
        _send_and_mark(url, alert_id, alert, target, send, out)
        report.append({"group": row["group_name"], "kind": row["kind"], "key": row["key"], "target": row["target"],
                       "attempt": row["attempts"], "sent": bool(out.sent),
                       **({"error": out.failed[row["target"]]} if out.failed else {})})
    return report


def _late_day_loaded(url: str, group: str, key: str) -> bool:
    """Whether a late alert's day (its key) is now covered by a successful run of the group."""
    try:
        day = date.fromisoformat(key)
    except ValueError:
        return False
    with connect(url) as conn:
        return first_uncovered_day(conn, group, [day]) is None


# -- lateness ------------------------------------------------------------------------------------
def late_alerts(url: str, *, now: datetime, base_url: str, dag_id: str | None = None,
                run_id: str | None = None) -> list[tuple[AlertSettings, Alert]]:
    """One ``late`` alert per enabled group that wants them and is late: some day due in the lookback
    window (its close, the scheduled run after it, plus ``late_after``) that no successful run
    covers. The alert is keyed by the latest such day and lists them all, so a group that never
    loaded sends one alert, not one per day, and a new late day sends a new one. The answer is
    ``pipeline.freshness`` (the Health page's), read from the warehouse: the truth, whatever
    Airflow scheduled."""
    out = []
    with connect(url, autocommit=True) as conn:  # one group's failed query must not abort the others
        for spec in read_specs(conn):
            if not spec.group.is_enabled or spec.source is None or not spec.source.is_active:
                continue
            try:
                settings = effective_alerts(spec.source.alerts, spec.group.alerts)
                if not settings.wants("late"):
                    continue
                fresh = group_freshness(conn, spec, now=now, grace=settings.late_after)
            except Exception as exc:  # noqa: BLE001 - a misconfigured group must not hide the others
                log.warning("lateness of %s not checked: %s: %s", spec.group.name, type(exc).__name__, exc)
                continue
            if fresh.missing:
                day = max(fresh.missing)
                out.append((settings, build_late_alert(
                    group=spec.group.name, day=day, deadline=fresh.deadlines[day], missing=fresh.missing,
                    last_complete=fresh.last_complete, base_url=base_url, dag_id=dag_id, run_id=run_id,
                )))
    return out
