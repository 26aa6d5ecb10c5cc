"""The management UI app inside Airflow's real api-server app (``create_app`` with the repo's plugin):
every route refuses anonymous callers, writes need edit rights and a CSRF token, the API applies
the CLI's validation with field names, Airflow state follows (pause, runs, backfills), and no
secret ever reaches a page or a response."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/moomarkets"
SECRET = "sekret-key-7f3a9c"
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 600/minute, max_concurrency: 2}}
job_groups:
  - {name: ui_api_quotes, description: All listed issues, data_source: jquants, dataset: daily_quotes,
     schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def airflow_app(airflow_db):
    """Airflow's whole FastAPI app, with the plugins folder of this repo (our app mounted)."""
    import secrets

    from airflow.api_fastapi.app import create_app, purge_cached_app

    with pytest.MonkeyPatch.context() as mp:
        # explicit secrets: other tests may reload Airflow's config, which drops the generated ones
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
        mp.setenv("AIRFLOW__API__SECRET_KEY", secrets.token_urlsafe(32))
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,editor:user,viewer:viewer")
        yield create_app()
        purge_cached_app()


@pytest.fixture(scope="module")
def ui_subapp(airflow_app):
    from fastapi import FastAPI
    from starlette.routing import Mount

    mounts = [r for r in airflow_app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert len(mounts) == 1, "the plugin's app is not mounted at /moomarkets"
    assert isinstance(mounts[0].app, FastAPI)
    return mounts[0].app


def token(role: str, username: str | None = None, seconds: int = 3600) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username=username or role.lower(), role=role), expiration_time_in_seconds=seconds
    )


@pytest.fixture
def client(airflow_app, warehouse_url):
    from fastapi.testclient import TestClient

    from moomarkets import airflow_ops
    from moomarkets.config import store
    from moomarkets.db import connect

    airflow_ops.clear_credential_cache()
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    with TestClient(airflow_app, base_url="http://testserver") as c:
        yield c


def bearer(role: str = "ADMIN") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role)}"}


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sync_dags() -> None:
    """Parse the dags folder (groups from the test warehouse) into Airflow's metadata DB."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        assert bag.import_errors == {}
        sync_bag_to_db(bag, bundle.name, bundle.version)


# -- every route needs a login ----------------------------------------------------------------
def _routes(subapp):
    from fastapi.routing import APIRoute

    out = []
    for route in subapp.routes:
        assert isinstance(route, APIRoute), f"unexpected non-API route {route!r}: it would escape the auth checks"
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path, route.path))
    return out


def test_every_route_refuses_anonymous_and_bad_tokens(client, ui_subapp):
    routes = _routes(ui_subapp)
    paths = {p for _, _, p in routes}
    # the enumeration is not vacuous: pages, forms, the API and the docs are all there
    assert {"/groups", "/groups/{name}/disable", "/api/groups", "/api/groups/{name}/backfills", "/openapi.json", "/docs"} <= paths
    assert len(routes) >= 35
    expired = token("ADMIN", seconds=-120)
    credentials = [
        ("none", {}, {}),
        ("garbage bearer", {"Authorization": "Bearer not-a-jwt"}, {}),
        ("expired bearer", {"Authorization": f"Bearer {expired}"}, {}),
        ("garbage cookie", {}, {"_token": "not-a-jwt"}),
        ("expired cookie", {}, {"_token": expired}),
        ("forged signature", {"Authorization": f"Bearer {token('ADMIN')[:-6]}AAAAAA"}, {}),
    ]
    failures = []
    for label, headers, cookies in credentials:
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        for method, path, template in routes:
            body = {} if method in ("POST", "PUT", "PATCH") else None
            r = client.request(method, PREFIX + path, headers=headers, json=body, follow_redirects=False)
            if template.startswith("/api/") or template in ("/openapi.json", "/docs"):
                ok = r.status_code == 401
            else:
                ok = r.status_code == 303 and r.headers["location"].startswith("/auth/login")
            if not ok:
                failures.append(f"{label}: {method} {path} -> {r.status_code} {r.headers.get('location', '')}")
    client.cookies.clear()
    assert failures == []


def test_login_redirect_comes_back_to_the_page(client):
    r = client.get(f"{PREFIX}/coverage?dataset=daily_quotes", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?next=")
    assert "moomarkets%2Fcoverage%3Fdataset%3Ddaily_quotes" in r.headers["location"]


def test_viewer_reads_but_cannot_change_anything(client, ui_subapp):
    headers = bearer("VIEWER")
    for method, path, template in _routes(ui_subapp):
        r = client.request(method, PREFIX + path.replace("/x", "/ui_api_quotes" if "group" in template else "/jquants"),
                           headers=headers, json={} if method != "GET" else None, follow_redirects=False)
        if method == "GET" and not template.endswith("/edit") and not template.endswith("/new"):
            assert r.status_code in (200, 303, 404, 422), (method, path, r.status_code)
        else:
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    # and nothing changed
    r = client.get(f"{PREFIX}/api/groups/ui_api_quotes", headers=headers)
    assert r.json()["is_enabled"] is True


# -- API: same validation as the CLI, field by field -------------------------------------------
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
            from moomarkets.config import store
            from moomarkets.db import connect

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


# -- CSRF -----------------------------------------------------------------------------------
def test_forms_and_cookie_writes_need_a_csrf_token(client):
    client.cookies.set("_token", token("ADMIN"))
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200
    good = csrf_from(page.text)
    url = f"{PREFIX}/groups/ui_api_quotes/disable"
    assert client.post(url, data={}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"csrf_token": "1.forged"}, follow_redirects=False).status_code == 403
    # a token minted for another session (another login of the same user) is refused too
    other = token("ADMIN")
    client.cookies.set("_token", other)
    assert client.post(url, data={"csrf_token": good}, follow_redirects=False).status_code == 403
    client.cookies.set("_token", token("ADMIN"))
    fresh = csrf_from(client.get(f"{PREFIX}/groups/ui_api_quotes").text)
    # right token, wrong origin
    r = client.post(url, data={"csrf_token": fresh}, headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(url, data={"csrf_token": fresh}, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303
    r = client.get(f"{PREFIX}/api/groups/ui_api_quotes")
    assert r.json()["is_enabled"] is False

    # JSON writes on the cookie need the header; Bearer clients do not
    body = {"enabled": True}
    assert client.put(f"{PREFIX}/api/groups/ui_api_quotes/enabled", json=body).status_code == 403
    hdr = client.get(f"{PREFIX}/api/csrf").json()
    r = client.put(f"{PREFIX}/api/groups/ui_api_quotes/enabled", json=body, headers={hdr["header"]: hdr["token"]})
    assert r.status_code == 200
    client.cookies.clear()
    r = client.put(f"{PREFIX}/api/groups/ui_api_quotes/enabled", json={"enabled": False}, headers=bearer())
    assert r.status_code == 200


def test_every_write_route_refuses_a_cookie_session_without_csrf(client, ui_subapp):
    client.cookies.set("_token", token("ADMIN"))
    writes = [(m, p) for m, p, _ in _routes(ui_subapp) if m != "GET"]
    assert len(writes) >= 15
    for method, path in writes:
        real = path.replace("/x", "/ui_api_quotes" if "group" in path else "/jquants")
        r = client.request(method, PREFIX + real, json={}, follow_redirects=False)
        assert r.status_code == 403, (method, real, r.status_code)
        r = client.request(method, PREFIX + real, data={"csrf_token": "0.bogus"}, follow_redirects=False)
        assert r.status_code == 403, (method, real, r.status_code)
    client.cookies.clear()


# -- pages ----------------------------------------------------------------------------------
def test_pages_render_and_the_group_form_shows_field_errors(client):
    client.cookies.set("_token", token("ADMIN"))
    for path in ("/groups", "/sources", "/coverage", "/groups/ui_api_quotes", "/sources/jquants", "/groups/new",
                 "/sources/new", "/groups/ui_api_quotes/edit", "/sources/jquants/edit"):
        r = client.get(PREFIX + path)
        assert r.status_code == 200, (path, r.text[:300])
        assert "<html" in r.text
    assert client.get(f"{PREFIX}/groups/nope").status_code == 404
    assert client.get(f"{PREFIX}/", follow_redirects=False).headers["location"] == f"{PREFIX}/groups"

    csrf = csrf_from(client.get(f"{PREFIX}/groups/new").text)
    form = {"csrf_token": csrf, "name": "ui_form_group", "description": "from the form", "data_source": "jquants",
            "dataset": "daily_quotes", "schedule": "0 25 * * *", "timezone": "Asia/Tokyo",
            "parameters": '{"universe": "all_listed"}', "is_enabled": "on"}
    r = client.post(f"{PREFIX}/groups/new", data=form, follow_redirects=False)
    assert r.status_code == 422
    assert 'id="error-schedule"' in r.text and "not a valid cron expression" in r.text
    assert 'value="ui_form_group"' in r.text  # the user's input is kept
    r = client.post(f"{PREFIX}/groups/new", data={**form, "schedule": "0 19 * * 1-5", "parameters": "{oops"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-parameters"' in r.text and "not valid JSON" in r.text
    r = client.post(f"{PREFIX}/groups/new", data={**form, "schedule": "0 19 * * 1-5"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/ui_form_group"
    page = client.get(r.headers["location"])
    assert "Created job group ui_form_group." in page.text
    assert "Created job group" not in client.get(r.headers["location"]).text  # the message shows once

    csrf = csrf_from(client.get(f"{PREFIX}/sources/new").text)
    r = client.post(f"{PREFIX}/sources/new", data={"csrf_token": csrf, "code": "Bad", "name": "x", "kind": "jquants"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-code"' in r.text
    r = client.post(f"{PREFIX}/sources/new", data={"csrf_token": csrf, "code": "jq2", "name": "JQ 2", "kind": "jquants",
                                                   "config": '{"max_concurrency": 0}', "is_active": "on"},
                    follow_redirects=False)
    assert r.status_code == 422 and 'id="error-config"' in r.text and "max_concurrency" in r.text


def test_coverage_shows_gaps_against_the_calendar(client, warehouse_url):
    import psycopg

    monday = date(2026, 3, 2)
    with psycopg.connect(warehouse_url) as conn:
        for i in range(7):
            d = monday + timedelta(days=i)
            conn.execute("INSERT INTO trading_calendar (source, date, hol_div) VALUES ('jquants', %s, %s)",
                         (d, 1 if d.weekday() < 5 and i != 2 else 0))  # Wednesday is a holiday
        for code in ("1301", "7203"):
            for i in (0, 1, 4):  # Thursday missing
                conn.execute("INSERT INTO daily_quotes (source, code, date, close) VALUES ('jquants', %s, %s, 1)",
                             (code, monday + timedelta(days=i)))
    r = client.get(f"{PREFIX}/api/coverage", params={"dataset": "daily_quotes", "source": "jquants",
                                                      "start": "2026-03-02", "end": "2026-03-08"}, headers=bearer("VIEWER"))
    assert r.status_code == 200, r.text
    cov = r.json()
    assert cov["gaps"] == ["2026-03-05"]
    assert [d["state"] for d in cov["days"]] == ["ok", "ok", "closed", "gap", "ok", "closed", "closed"]
    assert cov["matrix"]["codes"] == ["1301", "7203"]
    assert cov["matrix"]["missing"] == 2
    client.cookies.set("_token", token("VIEWER"))
    page = client.get(f"{PREFIX}/coverage", params={"dataset": "daily_quotes", "source": "jquants",
                                                     "start": "2026-03-02", "end": "2026-03-08"})
    assert page.status_code == 200 and ">1 gap day(s)<" in page.text and 'class="cell gap"' in page.text
    r = client.get(f"{PREFIX}/api/coverage", params={"dataset": "daily_quotes'; drop table x;--", "source": "jquants"},
                   headers=bearer("VIEWER"))
    assert r.status_code == 422


# -- Airflow side effects -------------------------------------------------------------------
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


# -- secrets --------------------------------------------------------------------------------
def test_credentials_are_checked_and_no_secret_is_ever_rendered(client, monkeypatch):
    from moomarkets import airflow_ops
    from moomarkets.sources.jquants.fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=SECRET)) as (base_url, _):
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": SECRET}))
        h = bearer("ADMIN")
        r = client.get(f"{PREFIX}/api/sources/jquants/credentials", headers=h)
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
        wrong = SECRET + "-wrong"
        monkeypatch.setenv("AIRFLOW_CONN_JQUANTS_DEFAULT",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": wrong}))
        airflow_ops.clear_credential_cache()
        r = client.get(f"{PREFIX}/api/sources/jquants/credentials?refresh=true", headers=h)
        assert r.json()["ok"] is False and wrong not in r.text
        client.cookies.set("_token", token("ADMIN"))
        bodies = [client.get(PREFIX + p).text for p in (
            "/groups", "/sources", "/sources/jquants", "/sources/jquants/edit", "/groups/ui_api_quotes",
            "/groups/ui_api_quotes/edit", "/coverage", "/api/sources", "/api/sources/jquants", "/api/groups",
            "/api/sources/jquants/credentials", "/openapi.json")]
        for text in bodies:
            assert SECRET not in text
    r = client.patch(f"{PREFIX}/api/sources/jquants", json={"conn_id": "ui_no_such_conn"}, headers=bearer())
    assert r.status_code == 200
    r = client.get(f"{PREFIX}/api/sources/jquants/credentials", headers=bearer())
    assert r.json()["ok"] is False and "'ui_no_such_conn' does not exist" in r.json()["message"]


def test_warehouse_down_is_a_clear_503(client, monkeypatch):
    from moomarkets.localpg import free_port

    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    r = client.get(f"{PREFIX}/api/groups", headers=bearer("VIEWER"))
    assert r.status_code == 503 and "warehouse unavailable" in r.json()["detail"]
    client.cookies.set("_token", token("VIEWER"))
    r = client.get(f"{PREFIX}/groups")
    assert r.status_code == 503 and "warehouse database is unavailable" in r.text
