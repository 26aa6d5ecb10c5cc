"""The JSON API of the management UI inside Airflow's real api-server app: the CLI's validation with
field names, OpenAPI docs, Airflow state following the config (pause, runs, backfills), and a clear
503 when the warehouse is down."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from ui_helpers import PREFIX, bearer, sync_dags, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_api_creates_and_rejects_with_field_errors(client):
    from moomarkets.config.models import JobGroup
    from moomarkets.config.validate import validate_group
    from moomarkets.errors import ConfigError

    h = bearer("USER")
    good = {"name": "ui_watchlist", "data_source": "jquants", "dataset": "daily_quotes", "schedule": "30 19 * * 1-5",
            "timezone": "Asia/Tokyo", "parameters": {"tickers": ["72030"]}, "is_enabled": False}
    r = client.post(f"{PREFIX}/api/groups", json=good, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["value"]["name"] == "ui_watchlist"

    cases = [
        ({"name": "Bad Name"}, ["body", "name"]),
        ({"name": "ui_x", "schedule": "every day"}, ["body", "schedule"]),
        ({"name": "ui_x", "timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"name": "ui_x", "data_source": "nope"}, ["body", "data_source"]),
        ({"name": "ui_x", "dataset": "weather"}, ["body", "dataset"]),
        ({"name": "ui_watchlist"}, ["body", "name"]),  # duplicate
    ]
    source = None
    for change, loc in cases:
        body = {**good, **change}
        r = client.post(f"{PREFIX}/api/groups", json=body, headers=h)
        assert r.status_code == 422, (change, r.text)
        detail = r.json()["detail"][0]
        assert detail["loc"][:2] == loc, (change, detail)
        # the message is the CLI's (same validator), not a paraphrase
        if change.get("name") != "ui_watchlist":
            from moomarkets.warehouse import config_store as store
            from moomarkets.warehouse.db import connect

            with connect() as conn:
                source = store.find_source(conn, body["data_source"])
            with pytest.raises(ConfigError) as exc:
                validate_group(JobGroup(**body), source)
            assert detail["msg"] == exc.value.reason

    r = client.patch(f"{PREFIX}/api/groups/ui_watchlist", json={"schedule": "0 20 * * 1-5"}, headers=h)
    assert r.status_code == 200 and r.json()["value"]["schedule"] == "0 20 * * 1-5"
    r = client.patch(f"{PREFIX}/api/groups/ui_watchlist", json={"name": "renamed"}, headers=h)
    assert r.status_code == 422  # unknown field for a patch: the name cannot change
    r = client.get(f"{PREFIX}/api/groups", headers=h)
    names = {g["name"]: g for g in r.json()}
    assert set(names) == {"ui_api_quotes", "ui_watchlist"}
    assert names["ui_api_quotes"]["schedule_words"].endswith("(Asia/Tokyo)")
    assert names["ui_api_quotes"]["next_run"]

    r = client.post(f"{PREFIX}/api/sources", json={"code": "yahoo", "name": "Yahoo", "kind": "yfinance"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["value"]["conn_id"] == "yfinance_default"
    r = client.post(f"{PREFIX}/api/sources", json={"code": "y2", "name": "Y", "kind": "yfinance",
                                                  "config": {"api_key": "x"}}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config"]
    r = client.put(f"{PREFIX}/api/sources/yahoo/active", json={"active": False}, headers=h)
    assert r.status_code == 200 and r.json()["value"]["is_active"] is False
    r = client.get(f"{PREFIX}/api/sources/nope", headers=h)
    assert r.status_code == 404


def test_openapi_documents_the_api(client):
    r = client.get(f"{PREFIX}/openapi.json", headers=bearer("VIEWER"))
    assert r.status_code == 200
    doc = r.json()
    assert "/api/groups/{name}/backfills" in doc["paths"]
    assert "post" in doc["paths"]["/api/groups"]
    assert "HTTPBearer" in json.dumps(doc["components"]["securitySchemes"])
    assert not any(p.startswith("/groups") for p in doc["paths"])  # pages are not API
    r = client.get(f"{PREFIX}/docs", headers=bearer("VIEWER"))
    assert r.status_code == 200 and "swagger" in r.text.lower()


def test_enable_disable_pauses_the_dag_and_runs_and_backfills_reach_airflow(client):
    from sqlalchemy import func, select

    from airflow.models.backfill import Backfill
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    sync_dags()
    h = bearer("USER")

    def paused() -> bool:
        with create_session() as s:
            return s.get(DagModel, "ui_api_quotes").is_paused

    r = client.put(f"{PREFIX}/api/groups/ui_api_quotes/enabled", json={"enabled": False}, headers=h)
    assert r.status_code == 200 and r.json()["notes"] == []
    assert paused() is True
    assert client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=h).json()["dag"]["is_paused"] is True
    client.put(f"{PREFIX}/api/groups/ui_api_quotes/enabled", json={"enabled": True}, headers=h)
    assert paused() is False

    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/runs", headers=h)
    assert r.status_code == 201, r.text
    run_id = r.json()["value"]
    with create_session() as s:
        run = s.scalar(select(DagRun).where(DagRun.dag_id == "ui_api_quotes", DagRun.run_id == run_id))
        assert run is not None and run.run_type == "manual"
        assert run.data_interval_end <= datetime.now(timezone.utc)  # the latest *complete* interval

    # Mon 2026-03-02 .. Fri 2026-03-06 in Tokyo: five runs, ending at 19:00 on each of those days
    body = {"from_date": "2026-03-02", "to_date": "2026-03-06", "dry_run": True}
    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/backfills", json=body, headers=h)
    assert r.status_code == 201, r.text
    plan = r.json()["value"]
    assert plan["runs"] == 5
    tokyo = ZoneInfo("Asia/Tokyo")
    ends = [datetime.fromisoformat(i["end"]).astimezone(tokyo) for i in plan["intervals"]]
    assert [(e.date().isoformat(), e.hour) for e in ends] == [(f"2026-03-0{d}", 19) for d in range(2, 7)]
    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/backfills", json={**body, "dry_run": False}, headers=h)
    assert r.status_code == 201, r.text
    with create_session() as s:
        bf = s.scalar(select(Backfill).where(Backfill.dag_id == "ui_api_quotes"))
        assert bf is not None and bf.id == r.json()["value"]["backfill_id"]
        n = s.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == "ui_api_quotes",
                                                                    DagRun.run_type == "backfill"))
        assert n == 5
    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/backfills", json={**body, "dry_run": False}, headers=h)
    assert r.status_code == 409 and "already running" in r.json()["detail"]
    r = client.post(f"{PREFIX}/api/groups/ui_api_quotes/backfills",
                    json={"from_date": "2026-03-07", "to_date": "2026-03-08"}, headers=h)  # a weekend: no runs
    assert r.status_code == 409


def test_warehouse_down_is_a_clear_503(client, monkeypatch):
    from moomarkets.dev.localpg import free_port

    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    r = client.get(f"{PREFIX}/api/groups", headers=bearer("VIEWER"))
    assert r.status_code == 503 and "warehouse unavailable" in r.json()["detail"]
    client.cookies.set("_token", token("VIEWER"))
    r = client.get(f"{PREFIX}/groups")
    assert r.status_code == 503 and "warehouse database is unavailable" in r.text
