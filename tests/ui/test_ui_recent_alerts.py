"""Where a group's recent alerts are visible, read-only: the group page's "Recent alerts" section,
the JSON API's group read (``recent_alerts``) and ``moomarkets groups show``. Each shows only
``alerts_sent``'s stored columns: the target's label, never anything from its Connection, and not
the stored message."""

from __future__ import annotations

import json

import pytest
from health_seed import only_reads
from ui_helpers import PREFIX, bearer, section, token

from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

RUN = "scheduled__2026-11-27T10:00:00+00:00"
RUN2 = "manual__2026-11-28T01:02:03+00:00"
ERROR = "HTTP 503 from the webhook (retry later)"
SECRET = "T0SECRET/B0SECRET/xoxSECRETslackwebhooktoken42"  # in the Connection only
IN_MESSAGE = "STORED-MESSAGE-TEXT-NOT-SHOWN"  # in the stored message only


@pytest.fixture
def sent(client, warehouse_url, monkeypatch):
    """ui_api_quotes alerts to slack_alerts, whose Connection holds a secret; alerts_sent holds a sent
    failure alert, a failed partial alert (3 attempts, with its error), a late alert still sending,
    and an alert of another group."""
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": "hooks.slack.com", "password": SECRET}))
    rows = [
        ("ui_api_quotes", "failure", RUN, "slack:slack_alerts", "ui_api_quotes", RUN, "sent", None, 1,
         "2026-11-27 10:05:00+00", "2026-11-27 10:05:07+00"),
        ("ui_api_quotes", "partial", RUN2, "webhook:alerts_webhook", "ui_api_quotes", RUN2, "failed", ERROR, 3,
         "2026-11-28 01:10:00+00", None),
        ("ui_api_quotes", "late", "2026-11-28", "slack:slack_alerts", "ui_api_quotes", None, "sending", None, 1,
         "2026-11-29 12:00:00+00", None),
        ("other_group", "failure", "scheduled__other", "slack:other_alerts", "other_group", "scheduled__other",
         "sent", None, 1, "2026-11-29 13:00:00+00", "2026-11-29 13:00:01+00"),
    ]
    with connect(warehouse_url) as conn, conn.transaction():
        conn.execute("""UPDATE job_groups SET alerts = '{"on": ["failure", "partial", "late"], "late_after": "2h",
                        "targets": [{"type": "slack", "conn_id": "slack_alerts"}]}' WHERE name = 'ui_api_quotes'""")
        for row in rows:
            conn.execute(
                "INSERT INTO alerts_sent (group_name, kind, key, target, dag_id, run_id, status, error, attempts,"
                " created_at, claimed_at, sent_at, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " jsonb_build_object('text', %s::text))",
                (*row[:10], row[9], row[10], IN_MESSAGE))
    return warehouse_url


def _page(client, name: str = "ui_api_quotes") -> str:
    client.cookies.set("_token", token("ADMIN"))
    response = client.get(f"{PREFIX}/groups/{name}")
    assert response.status_code == 200, response.text[:300]
    return response.text


def test_group_page_lists_recent_alerts_newest_first(client, sent):
    page = _page(client)
    table = section(page, '<table id="recent-alerts">', "</table>")
    body = table.split("<tbody>", 1)[1]
    late, partial, failure = body.split("</tr>")[:3]
    assert "late" in late and "2026-11-28" in late and "slack:slack_alerts" in late and "sending" in late
    assert "2026-11-29 12:00 UTC" in late and "href=" not in late  # a late day links nowhere
    assert "partial" in partial and "webhook:alerts_webhook" in partial and ">failed<" in partial
    assert "HTTP 503 from the webhook (retry later)" in partial and '<td class="num">3</td>' in partial
    assert "failure" in failure and ">sent<" in failure and "2026-11-27 10:05 UTC" in failure
    assert "sent 2026-11-27 10:05 UTC" in failure and '<td class="num">1</td>' in failure
    # run ids link to the Airflow run, like the Recent runs table
    assert 'dags/ui_api_quotes/runs/scheduled__2026-11-27T10%3A00%3A00%2B00%3A00"' in failure
    assert 'dags/ui_api_quotes/runs/manual__2026-11-28T01%3A02%3A03%2B00%3A00"' in partial
    assert "other_group" not in table and "scheduled__other" not in table
    assert SECRET not in page and "SECRET" not in page and IN_MESSAGE not in page
    assert "hooks.slack.com" not in page


def test_group_page_without_alerts_says_so(client, warehouse_url):
    page = _page(client)
    assert "No alerts sent for this group yet." in page and 'id="recent-alerts"' not in page


def test_group_page_shows_the_last_ten(client, sent):
    with connect(sent) as conn, conn.transaction():
        for i in range(12):
            conn.execute(
                "INSERT INTO alerts_sent (group_name, kind, key, target, status, created_at)"
                " VALUES ('ui_api_quotes', 'late', %s, 'slack:slack_alerts', 'sent', now() - %s * interval '1 minute')",
                (f"2026-10-{i + 1:02d}", i))
    table = section(_page(client), '<table id="recent-alerts">', "</table>")
    assert table.count("<tr>") == 11  # the header and 10 rows
    assert "2026-10-01" in table and "2026-10-10" in table and "2026-10-11" not in table
    assert RUN2 not in table  # older than the ten


def test_api_group_read_has_recent_alerts(client, sent):
    body = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=bearer()).json()
    alerts = body["recent_alerts"]
    assert [(a["kind"], a["key"], a["target"], a["status"], a["attempts"]) for a in alerts] == [
        ("late", "2026-11-28", "slack:slack_alerts", "sending", 1),
        ("partial", RUN2, "webhook:alerts_webhook", "failed", 3),
        ("failure", RUN, "slack:slack_alerts", "sent", 1),
    ]
    assert alerts[1]["error"] == ERROR and alerts[0]["run_id"] is None and alerts[2]["run_id"] == RUN
    assert alerts[2]["created_at"] == "2026-11-27T10:05:00Z" and alerts[2]["sent_at"] == "2026-11-27T10:05:07Z"
    assert set(alerts[0]) == {"kind", "key", "target", "dag_id", "run_id", "status", "error", "attempts",
                              "created_at", "sent_at"}
    text = json.dumps(body)
    assert SECRET not in text and "SECRET" not in text and IN_MESSAGE not in text
    other = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=bearer("VIEWER")).json()
    assert other["recent_alerts"] == alerts  # read-only: a reader sees them too


def test_recent_alerts_follow_the_group_read_rights(client, sent, monkeypatch):
    only_reads(monkeypatch, "other_group")
    assert client.get(f"{PREFIX}/groups/ui_api_quotes", headers=bearer("ADMIN")).status_code == 403
    response = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=bearer("ADMIN"))
    assert response.status_code == 403 and RUN not in response.text


def test_groups_show_lists_recent_alerts(sent, capsys):
    from moomarkets.cli import main

    capsys.readouterr()
    assert main(["groups", "show", "ui_api_quotes"]) == 0
    out = capsys.readouterr().out
    lines = json.loads(out)["recent_alerts"]
    assert lines == [
        "2026-11-29 12:00 UTC late 2026-11-28 to slack:slack_alerts: sending (1 attempt)",
        f"2026-11-28 01:10 UTC partial {RUN2} to webhook:alerts_webhook: failed: {ERROR} (3 attempts)",
        f"2026-11-27 10:05 UTC failure {RUN} to slack:slack_alerts: sent 2026-11-27 10:05 UTC (1 attempt)",
    ]
    assert SECRET not in out and "SECRET" not in out and IN_MESSAGE not in out
