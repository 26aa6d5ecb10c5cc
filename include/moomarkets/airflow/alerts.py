"""Alert delivery through Airflow's provider notifiers, to targets named by Airflow Connections.

The domain (``moomarkets.pipeline.alerts``) decides what to send and keeps the once-per-key ledger;
this module turns one alert and one target into a notifier and calls it:

- ``email``: ``SmtpNotifier`` (the Connection holds host, port, login, password, ``from_email``),
- ``slack``: ``SlackWebhookNotifier`` (a ``slackwebhook`` Connection: the webhook URL or token),
- ``webhook``: ``HttpNotifier`` POSTing the alert's JSON to the Connection's host + ``endpoint``.

Notifiers are called with ``notify(context)``, not ``notifier(context)``: ``__call__`` would first
Jinja-render every templated field, and our texts are data (an error message may contain ``{{``).
They run where the alert is decided: in the ``record_run`` task and the watchdog's task, i.e. on the
workers, so the providers, the target Connections and the network path to them are needed there.
A target's failure is scrubbed of its Connection's secrets (password, webhook token, any URL),
recorded in ``alerts_sent`` and logged; it never fails the run and never stops the other targets.
The watchdog re-sends the stored message of a failed (or abandoned) delivery (:func:`resend_alerts`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from moomarkets.airflow.connections import get_credentials, lookup
from moomarkets.config.alerts import AlertTarget
from moomarkets.errors import scrub
from moomarkets.pipeline import alerts as domain

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_FROM = "moomarkets@localhost"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")


def base_url() -> str:
    """Where links in a message point: Airflow's ``[api] base_url`` (set it to the public address)."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL


def _secrets(conn: Any) -> list[str]:
    """Every value of a Connection that could be a secret (password, extras), longest first so a
    token inside a URL is replaced whole. A URL (a Slack webhook URL as the password, or a host
    carrying the webhook's path) also gives its path and the path's segments after the first: the
    token may show up without the scheme and host."""
    values = [getattr(conn, "password", None) or ""]
    extra = getattr(conn, "extra_dejson", None) or {}
    values += [str(v) for k, v in extra.items() if isinstance(v, str) and k not in ("from_email",)]
    for value in [*values, getattr(conn, "host", None) or ""]:
        for part in value.split():
            path = urlsplit(part).path if "://" in part else (part if "/" in part else "")
            segments = [s for s in path.split("/") if s]
            values += [path.strip("/"), *segments[1:], "/".join(segments[1:])] if len(segments) > 1 else []
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def clean(text: str, secrets: list[str]) -> str:
    """``text`` without the given secrets and without URLs (a Slack webhook URL is a credential)."""
    return _URL.sub("<url>", scrub(text, *secrets))


def notifier_for(target: AlertTarget, alert: domain.Alert, conn: Any, secrets: list[str]):
    """The provider notifier that delivers ``alert`` to ``target`` (imports only the one needed);
    ``secrets`` are the Connection's (:func:`_secrets`), kept out of the Slack client's log."""
    if target.type == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
        from airflow.sdk.configuration import conf

        sender = ((getattr(conn, "extra_dejson", None) or {}).get("from_email")
                  or conf.get("email", "from_email", fallback=None) or DEFAULT_FROM)
        return SmtpNotifier(to=list(target.to), from_email=sender, subject=alert.subject,
                            html_content=alert.html, smtp_conn_id=target.conn_id)
    if target.type == "slack":
        return _quiet_slack_notifier(target.conn_id, alert.text, secrets)
    from airflow.providers.http.notifications.http import HttpNotifier

    return HttpNotifier(http_conn_id=target.conn_id, endpoint=target.endpoint, json=alert.payload)


class _ScrubbingLogger(logging.LoggerAdapter):
    """The logger handed to slack_sdk's ``WebhookClient``: it logs the full webhook URL (a
    credential) when it retries a request, so every line goes out cleaned of URLs and secrets."""

    def __init__(self, secrets: list[str]):
        super().__init__(log.getChild("slack"), {})
        self.secrets = secrets
        self.level = logging.INFO  # slack_sdk reads ``logger.level`` (<= DEBUG: extra retry lines)

    def process(self, msg: Any, kwargs: Any) -> tuple[str, Any]:
        return clean(str(msg), self.secrets), kwargs


def _quiet_slack_notifier(conn_id: str, text: str, secrets: list[str]):
    """``SlackWebhookNotifier`` whose hook's client logs through :class:`_ScrubbingLogger`."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
    from airflow.providers.slack.notifications.slack_webhook import (
        SlackWebhookNotifier,
    )

    class QuietSlackWebhookNotifier(SlackWebhookNotifier):
        @property
        def hook(self) -> SlackWebhookHook:
            return SlackWebhookHook(slack_webhook_conn_id=self.slack_webhook_conn_id, proxy=self.proxy,
                                    timeout=self.timeout, retry_handlers=self.retry_handlers,
                                    logger=_ScrubbingLogger(secrets))

    return QuietSlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=text, unfurl_links=False)


def sender(context: dict[str, Any]) -> Callable[[AlertTarget, domain.Alert], None]:
    """``send(target, alert)`` for :func:`moomarkets.pipeline.alerts.deliver`."""

    def send(target: AlertTarget, alert: domain.Alert) -> None:
        try:
            conn = lookup(target.conn_id)
        except Exception as exc:  # noqa: BLE001 - a missing Connection is this target's failure
            raise domain.DeliveryError(f"connection {target.conn_id!r} could not be read ({type(exc).__name__})") \
                from None
        secrets = _secrets(conn)
        try:
            notifier_for(target, alert, conn, secrets).notify(context)
        except Exception as exc:  # noqa: BLE001 - reported scrubbed, never with the raw traceback
            raise domain.DeliveryError(clean(f"{type(exc).__name__}: {exc}", secrets)[:1000]) from None

    return send


def send_run_alerts(
    context: dict[str, Any], *, url: str, group: str, dag_id: str, run_id: str, summary: dict[str, Any],
    source_conn_id: str,
) -> list[str]:
    """Send the alerts a closed run earned (one per kind and target, once); returns the kinds sent
    or attempted. Never raises: alerting trouble is logged, the run's own outcome stands."""
    if not domain.run_kinds(summary):  # a clean run earns none: no Connection read, no query
        return []
    try:
        conf = getattr(context.get("dag_run"), "conf", None)
        history = conf.get("history") if isinstance(conf, dict) else None
        settings, alerts = domain.run_alerts(url, group=group, dag_id=dag_id, run_id=run_id, summary=summary,
                                             base_url=base_url(), secrets=[_source_secret(source_conn_id)],
                                             history=history)
        for alert in alerts:
            domain.deliver(url, alert, settings.targets, sender(context))
        return [a.kind for a in alerts]
    except Exception as exc:  # noqa: BLE001 - never fail (or retry) a run because its alert failed
        log.warning("alerts for %s/%s not sent: %s: %s", dag_id, run_id, type(exc).__name__, clean(str(exc), []))
        return []


def _source_secret(conn_id: str) -> str | None:
    """The source's key, to scrub from error texts (unit errors are stored scrubbed already; this
    is the second line). A Connection that cannot be read must not cost the alert."""
    try:
        return get_credentials(conn_id).secret
    except Exception:  # noqa: BLE001
        return None


def send_late_alerts(context: dict[str, Any], *, url: str) -> dict[str, Any]:
    """The watchdog's work: a ``late`` alert per group whose due trading day is not loaded."""
    found = domain.late_alerts(url, now=datetime.now(UTC), base_url=base_url(),
                               dag_id=context["dag"].dag_id, run_id=context["run_id"])
    report: dict[str, Any] = {}
    for settings, alert in found:
        done = domain.deliver(url, alert, settings.targets, sender(context))
        report[alert.group] = {"day": alert.key, "sent": done.sent, "failed": done.failed, "already": done.already}
    log.info("lateness: %s", report or "no group is late")
    return report


def resend_alerts(context: dict[str, Any], *, url: str) -> list[dict[str, Any]]:
    """The watchdog's retry of deliveries that failed or were abandoned mid-send (stored messages,
    up to ``MAX_ATTEMPTS`` attempts in all; see ``moomarkets.pipeline.alerts.resend_pending``)."""
    report = domain.resend_pending(url, sender(context))
    log.info("re-sent alerts: %s", report or "none pending")
    return report
