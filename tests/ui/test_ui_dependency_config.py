"""Dependencies and alerts in the management UI: the group form's multi-select, timeout and alerts
YAML (posted, stored, re-rendered with field errors), the source form's alerts, the group page's
config, and the JSON API's bodies and answers."""

from __future__ import annotations

import json

import pytest
from ui_helpers import PREFIX, bearer, csrf_from, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

GROUP_FORM = {"description": "", "data_source": "jquants", "dataset": "trading_calendar", "schedule": "0 7 * * *",
              "timezone": "Asia/Tokyo", "parameters": "{}", "is_enabled": "on", "upstream_timeout": "6h", "alerts": ""}


@pytest.fixture
def slack(monkeypatch):
    """An Airflow Connection for alert targets, as Airflow reads one from the environment."""
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "slackwebhook", "password": "T/B/x"}))


def stored_group(name: str):
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    with connect() as conn:
        return store.get_group(conn, name)


def test_group_form_picks_upstreams_and_shows_field_errors(client, slack):
    client.cookies.set("_token", token("ADMIN"))
    page = client.get(f"{PREFIX}/groups/new").text
    assert '<select id="depends_on" name="depends_on" multiple' in page and '<option value="ui_api_quotes"' in page
    csrf = csrf_from(page)

    form = {**GROUP_FORM, "csrf_token": csrf, "name": "ui_calendar", "upstream_timeout": "90m",
            "alerts": "on: [failure]\ntargets:\n  - {type: slack, conn_id: slack_alerts}\n"}
    r = client.post(f"{PREFIX}/groups/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    g = stored_group("ui_calendar")
    assert g.depends_on == [] and g.upstream_timeout == "1h30m"
    assert g.alerts == {"on": ["failure"], "targets": [{"type": "slack", "conn_id": "slack_alerts"}]}

    # two upstreams from the multi-select; the edit form shows them selected and the alerts as YAML
    form = {**GROUP_FORM, "csrf_token": csrf, "name": "ui_quotes", "dataset": "daily_quotes",
            "parameters": '{"universe": "all_listed"}', "depends_on": ["ui_calendar", "ui_api_quotes"]}
    assert client.post(f"{PREFIX}/groups/new", data=form, follow_redirects=False).status_code == 303
    assert stored_group("ui_quotes").depends_on == ["ui_calendar", "ui_api_quotes"]
    edit = client.get(f"{PREFIX}/groups/ui_quotes/edit").text
    assert '<option value="ui_calendar" selected>' in edit and '<option value="ui_api_quotes" selected>' in edit
    assert '<option value="ui_quotes"' not in edit  # not itself
    assert "conn_id: slack_alerts" in client.get(f"{PREFIX}/groups/ui_calendar/edit").text
    detail = client.get(f"{PREFIX}/groups/ui_quotes").text
    assert 'id="depends-on"' in detail and "(waits up to 6h)" in detail
    assert "<code>slack:slack_alerts</code>" not in detail  # ui_quotes has no alerts of its own, nor its source
    assert "<code>slack:slack_alerts</code>" in client.get(f"{PREFIX}/groups/ui_calendar").text

    before = stored_group("ui_calendar")
    edit_form = {**GROUP_FORM, "csrf_token": csrf}
    cases = [
        ({"depends_on": ["ui_quotes"]}, "depends_on", "cycle ui_calendar -&gt; ui_quotes -&gt; ui_calendar"),
        ({"upstream_timeout": "8d"}, "upstream_timeout", "out of range (1m .. 7d)"),
        ({"alerts": "targets: [{type: slack"}, "alerts", "Alerts is not valid YAML at line"),
        ({"alerts": "on: [fire]"}, "alerts", "unknown alert kind(s) fire"),
        ({"alerts": "targets: [{type: slack, conn_id: slack_nowhere}]"}, "alerts",
         "Airflow connection &#39;slack_nowhere&#39; does not exist"),
    ]
    for change, field, needle in cases:
        r = client.post(f"{PREFIX}/groups/ui_calendar/edit", data={**edit_form, **change}, follow_redirects=False)
        assert r.status_code == 422, (change, r.text[:300])
        assert f'id="error-{field}"' in r.text and needle in r.text, (change, r.text)
        assert stored_group("ui_calendar") == before  # nothing written
    r = client.post(f"{PREFIX}/groups/ui_calendar/edit", data={**edit_form, "depends_on": ["ui_quotes"]})
    assert '<option value="ui_quotes" selected>' in r.text  # the choice is kept on the re-rendered form


def test_source_form_takes_alerts_yaml(client, slack):
    client.cookies.set("_token", token("ADMIN"))
    csrf = csrf_from(client.get(f"{PREFIX}/sources/jquants/edit").text)
    form = {"csrf_token": csrf, "name": "J-Quants", "kind": "jquants", "conn_id": "jquants_default",
            "description": "", "config": '{"rate_limit": "600/minute", "max_concurrency": 2}', "is_active": "on"}
    r = client.post(f"{PREFIX}/sources/jquants/edit", data={**form, "alerts": "late_after: never"})
    assert r.status_code == 422 and 'id="error-alerts"' in r.text and "&#39;never&#39; is not a duration" in r.text
    r = client.post(f"{PREFIX}/sources/jquants/edit", follow_redirects=False,
                    data={**form, "alerts": "late_after: 2h\ntargets: [{type: slack, conn_id: slack_alerts}]"})
    assert r.status_code == 303
    assert "late_after: 2h" in client.get(f"{PREFIX}/sources/jquants/edit").text
    # the group page shows the source's defaults in effect
    assert "(late after 2h)" in client.get(f"{PREFIX}/groups/ui_api_quotes").text


def test_api_carries_dependencies_and_alerts(client, slack):
    h = bearer("USER")
    body = {"name": "ui_api_calendar", "data_source": "jquants", "dataset": "trading_calendar",
            "schedule": "0 7 * * *", "alerts": {"targets": [{"type": "slack", "conn_id": "slack_alerts"}]}}
    r = client.post(f"{PREFIX}/api/groups", json=body, headers=h)
    assert r.status_code == 201, r.text
    r = client.patch(f"{PREFIX}/api/groups/ui_api_quotes", json={"depends_on": ["ui_api_calendar"],
                                                               "upstream_timeout": "120m"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["value"]["depends_on"] == ["ui_api_calendar"] and r.json()["value"]["upstream_timeout"] == "2h"
    got = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=h).json()
    assert (got["depends_on"], got["upstream_timeout"], got["alerts"]) == (["ui_api_calendar"], "2h", {})
    assert client.get(f"{PREFIX}/api/groups/ui_api_calendar", headers=h).json()["alerts"]["targets"][0]["conn_id"] == (
        "slack_alerts")

    before = client.get(f"{PREFIX}/api/groups", headers=h).json()
    cases = [
        ("ui_api_calendar", {"depends_on": ["ui_api_quotes"]}, ["body", "depends_on"],
         "cycle ui_api_calendar -> ui_api_quotes -> ui_api_calendar"),
        ("ui_api_quotes", {"depends_on": ["ghost"]}, ["body", "depends_on"], "unknown job group 'ghost'"),
        ("ui_api_quotes", {"upstream_timeout": "0m"}, ["body", "upstream_timeout"], "out of range"),
        ("ui_api_quotes", {"alerts": {"targets": [{"type": "slack", "conn_id": "nope"}]}},
         ["body", "alerts", "targets[0]"], "Airflow connection 'nope' does not exist"),
        ("ui_api_quotes", {"depends_on": "ui_api_calendar"}, ["body", "depends_on"], "list"),  # the API takes a list
    ]
    for name, patch, loc, needle in cases:
        r = client.patch(f"{PREFIX}/api/groups/{name}", json=patch, headers=h)
        assert r.status_code == 422, (patch, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"] == loc and needle in detail["msg"], (patch, detail)
    assert client.get(f"{PREFIX}/api/groups", headers=h).json() == before

    r = client.patch(f"{PREFIX}/api/sources/jquants", json={"alerts": {"on": ["late"], "late_after": "1h"}},
                     headers=h)
    assert r.status_code == 200 and r.json()["value"]["alerts"] == {"on": ["late"], "late_after": "1h"}
    assert client.get(f"{PREFIX}/api/sources/jquants", headers=h).json()["alerts"]["late_after"] == "1h"
    r = client.patch(f"{PREFIX}/api/groups/ui_api_quotes", json={"depends_on": []}, headers=h)
    assert r.status_code == 200 and r.json()["value"]["depends_on"] == []
