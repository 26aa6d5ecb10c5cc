"""The management UI app inside Airflow's real api-server app (``create_app`` with the repo's plugin):
every route refuses anonymous callers, writes need edit rights and a CSRF token, the API applies
the CLI's validation with field names, Airflow state follows (pause, runs, backfills), and no
secret ever reaches a page or a response."""

from __future__ import annotations

import json
import re
import time
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

    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

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

    # the page form too, with a valid CSRF token of the viewer's own session: refused, nothing written
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect
    from moomarkets.ui.auth import Identity, csrf_valid

    viewer_cookie = token("VIEWER")
    client.cookies.set("_token", viewer_cookie)
    page = client.get(f"{PREFIX}/groups/ui_api_quotes")
    assert page.status_code == 200
    csrf = csrf_from(page.text)
    assert csrf_valid(Identity(user=None, via="cookie", session_binding=viewer_cookie), csrf)  # not a CSRF refusal
    form = {"csrf_token": csrf, "name": "ui_viewer_group", "data_source": "jquants", "dataset": "daily_quotes",
            "schedule": "0 19 * * 1-5", "timezone": "Asia/Tokyo", "parameters": '{"universe": "all_listed"}',
            "is_enabled": "on"}
    r = client.post(f"{PREFIX}/groups/new", data=form, follow_redirects=False)
    assert r.status_code == 403, r.text[:300]
    assert "needs permission to edit DAGs" in r.text
    client.cookies.clear()
    with connect() as conn:
        assert [g.name for g in store.list_groups(conn)] == ["ui_api_quotes"]  # no ui_viewer_group


def test_group_form_checks_edit_rights_for_the_new_dag_name(client, monkeypatch):
    """A user who may edit DAGs in general but not the one named ``ui_locked``: the page form, like the
    API, refuses to create a group (= a DAG) under that name."""
    from airflow.api_fastapi.app import get_auth_manager

    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    am = get_auth_manager()
    original = am.is_authorized_dag
    asked: list[tuple[str, str | None]] = []

    def is_authorized_dag(*, method, user, access_entity=None, details=None, **kw):
        dag_id = details.id if details is not None else None
        asked.append((method, dag_id))
        if method == "PUT" and dag_id == "ui_locked":
            return False
        return original(method=method, user=user, access_entity=access_entity, details=details, **kw)

    monkeypatch.setattr(am, "is_authorized_dag", is_authorized_dag)
    session = token("ADMIN")
    client.cookies.set("_token", session)
    csrf = csrf_from(client.get(f"{PREFIX}/groups/new").text)
    form = {"csrf_token": csrf, "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
            "timezone": "Asia/Tokyo", "parameters": '{"universe": "all_listed"}', "is_enabled": "on"}
    r = client.post(f"{PREFIX}/groups/new", data={**form, "name": "ui_locked"}, follow_redirects=False)
    assert r.status_code == 403, r.text[:300]
    assert "needs permission to edit DAGs" in r.text
    assert ("PUT", "ui_locked") in asked
    body = {k: v for k, v in form.items() if k != "csrf_token"} | {"name": "ui_locked", "parameters": {"universe": "all_listed"},
                                                                       "is_enabled": True}
    client.cookies.clear()
    assert client.post(f"{PREFIX}/api/groups", json=body, headers=bearer()).status_code == 403  # the API agrees
    with connect() as conn:
        assert "ui_locked" not in [g.name for g in store.list_groups(conn)]
    # another name is fine for the same user (same session, same CSRF token)
    client.cookies.set("_token", session)
    r = client.post(f"{PREFIX}/groups/new", data={**form, "name": "ui_unlocked"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/ui_unlocked", re.findall(r'id="error-[^"]+">[^<]*', r.text)
    client.cookies.clear()
    with connect() as conn:
        assert "ui_unlocked" in [g.name for g in store.list_groups(conn)]


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


def _section(html: str, start: str, end: str) -> str:
    i = html.index(start)
    return html[i:html.index(end, i)]


def test_run_progress_units_errors_and_pool_usage_show_real_data(client, warehouse_url):
    """A run recorded with the runner's own storage functions (3 units: one loaded, one failed, one
    still running), then finished: the list, the detail page, the JSON and the source's last error
    show it; the source's pool shows its slots and a running task."""
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.warehouse import runs as storage
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect
    from moomarkets.airflow.pools import pool_name, sync_pools
    from moomarkets.sources.base import FetchUnit

    error = "HTTPError: 429 Too Many Requests <retry-after=60> for 2026-03-03"
    units = [FetchUnit(key=f"date:2026-03-0{d}", kind="dates", params={"dates": [f"2026-03-0{d}"]}).to_dict()
             for d in (2, 3, 4)]
    ok, bad, busy = (u["key"] for u in units)
    run_id = "scheduled__2026-03-04T10:00:00+00:00"
    with connect(warehouse_url) as conn:
        with conn.transaction():
            run_pk = storage.start_run(
                conn, group_name="ui_api_quotes", dag_id="ui_api_quotes", run_id=run_id,
                interval_start=datetime(2026, 3, 3, 10, tzinfo=timezone.utc),
                interval_end=datetime(2026, 3, 4, 10, tzinfo=timezone.utc),
                units=units, plan={"units": 3, "kinds": ["dates"]},
            )
        for u in units:
            with conn.transaction():
                storage.mark_unit_running(conn, run_pk, u)
        with conn.transaction():
            storage.mark_unit_done(conn, run_pk, ok, rows=1234, requests=3)
            storage.refresh_run_progress(conn, run_pk)
        with conn.transaction():
            storage.mark_unit_done(conn, run_pk, bad, rows=0, requests=2, error=error)
            storage.refresh_run_progress(conn, run_pk)
        # no helper sets times; move them back so durations are known (10 min run, 95 s, 1 h 2 min 5 s, ~2 min)
        conn.execute("UPDATE runs SET started_at = now() - interval '10 minutes' WHERE id = %s", (run_pk,))
        for key, seconds in ((ok, 95), (bad, 3725)):
            conn.execute("UPDATE run_units SET started_at = finished_at - make_interval(secs => %s)"
                         " WHERE run_pk = %s AND unit_key = %s", (seconds, run_pk, key))
        conn.execute("UPDATE run_units SET started_at = now() - interval '125 seconds' WHERE run_pk = %s AND unit_key = %s",
                     (run_pk, busy))
        conn.commit()

    h = bearer("VIEWER")
    client.cookies.set("_token", token("VIEWER"))

    # -- group list: JSON and page
    g = {x["name"]: x for x in client.get(f"{PREFIX}/api/groups", headers=h).json()}["ui_api_quotes"]
    assert (g["last_run_status"], g["last_run_id"]) == ("running", run_id)
    assert (g["units_total"], g["units_done"], g["units_failed"], g["rows_loaded"]) == (3, 1, 1, 1234)
    row = _section(client.get(f"{PREFIX}/groups").text, 'data-group="ui_api_quotes"', "</tr>")
    assert 'class="badge running">running<' in row
    assert "1/3 units" in row and ">1 failed<" in row
    assert re.search(r'class="num rows">\s*1,234\s*<', row), row
    assert "width:33%" in row

    # -- runs JSON: per-unit status, rows, duration, error
    r = client.get(f"{PREFIX}/api/groups/ui_api_quotes/runs", headers=h)
    assert r.status_code == 200, r.text
    [run] = r.json()
    assert (run["run_id"], run["status"], run["units_done"], run["units_failed"], run["rows_loaded"]) == (
        run_id, "running", 1, 1, 1234)
    assert 600 <= run["seconds"] < 700
    got = {u["unit_key"]: u for u in run["units"]}
    assert list(got) == [ok, bad, busy]
    assert [(got[k]["status"], got[k]["rows"], got[k]["requests"], got[k]["attempts"]) for k in (ok, bad, busy)] == [
        ("success", 1234, 3, 1), ("failed", 0, 2, 1), ("running", 0, 0, 1)]
    assert got[ok]["seconds"] == pytest.approx(95, abs=0.01) and got[ok]["error"] is None
    assert got[bad]["seconds"] == pytest.approx(3725, abs=0.01) and got[bad]["error"] == error
    assert 125 <= got[busy]["seconds"] < 200  # still running: the time so far
    assert client.get(f"{PREFIX}/api/groups/nope/runs", headers=h).status_code == 404

    # -- group detail page: the run and each unit, the error escaped
    runs = _section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<table id="runs">', "</main>")
    assert run_id in runs and 'class="badge running">running<' in runs
    assert re.search(r">1/3 <span class=\"badge bad\">1 failed</span>", runs), runs
    assert re.search(r"10 min \d+ s", runs)
    unit_rows = dict(re.findall(r"<tr><td><code>([^<]+)</code></td>(.*?)</tr>", runs, re.S))
    assert list(unit_rows) == [ok, bad, busy]
    assert 'badge success">success<' in unit_rows[ok] and ">1,234<" in unit_rows[ok] and ">1 min 35 s<" in unit_rows[ok]
    assert 'badge failed">failed<' in unit_rows[bad] and ">1 h 2 min<" in unit_rows[bad]
    assert "HTTPError: 429 Too Many Requests &lt;retry-after=60&gt; for 2026-03-03" in unit_rows[bad]
    assert "<retry-after" not in runs
    assert 'badge running">running<' in unit_rows[busy] and re.search(r">2 min \d+ s<", unit_rows[busy])

    # -- the source's last error: the failed unit, while its run still goes on
    last = client.get(f"{PREFIX}/api/sources/jquants", headers=h).json()["last_error"]
    assert last is not None
    assert (last["group_name"], last["run_id"], last["status"], last["unit_key"]) == ("ui_api_quotes", run_id, "failed", bad)
    assert last["error"] == f"{bad}: {error}"
    page = client.get(f"{PREFIX}/sources/jquants").text
    assert "No failed runs." not in page
    assert f"{bad}: HTTPError: 429 Too Many Requests &lt;retry-after=60&gt;" in page and "still running" in page
    row = _section(client.get(f"{PREFIX}/sources").text, 'data-source="jquants"', "</tr>")
    assert "429 Too Many Requests &lt;retry-after=60&gt;" in row

    # -- the last unit loads and the run closes: partial, 2/3, the run's error is now the last error
    with connect(warehouse_url) as conn, conn.transaction():
        storage.mark_unit_done(conn, run_pk, busy, rows=10, requests=1)
        summary = storage.finish_run(conn, run_pk)
    assert summary["status"] == "partial"
    g = {x["name"]: x for x in client.get(f"{PREFIX}/api/groups", headers=h).json()}["ui_api_quotes"]
    assert (g["last_run_status"], g["units_done"], g["units_failed"], g["rows_loaded"]) == ("partial", 2, 1, 1244)
    assert g["last_error"] == f"{bad}: {error}"
    row = _section(client.get(f"{PREFIX}/groups").text, 'data-group="ui_api_quotes"', "</tr>")
    assert "2/3 units" in row and 'class="badge partial">partial<' in row and "1,244" in row
    last = client.get(f"{PREFIX}/api/sources/jquants", headers=h).json()["last_error"]
    assert (last["status"], last["unit_key"], last["error"]) == ("partial", None, f"{bad}: {error}")
    runs = _section(client.get(f"{PREFIX}/groups/ui_api_quotes").text, '<table id="runs">', "</main>")
    assert 'badge partial">partial<' in runs and "1,244" in runs

    # -- the pool: synced into Airflow, then one of the group's tasks runs in it
    with connect(warehouse_url) as conn:
        sync_pools(store.list_sources(conn))
    pool = pool_name("jquants")
    before = client.get(f"{PREFIX}/api/sources/jquants/pool", headers=h).json()
    assert before["name"] == pool and before["exists"] is True and before["slots"] == 2
    assert before["open"] == 2 - before["running"] - before["queued"]
    sync_dags()
    try:
        dag_run_id = airflow_ops.trigger_run("ui_api_quotes", user_name="test")
    except airflow_ops.AirflowOpError:  # an earlier test's Run now fell in this same second
        time.sleep(1.1)
        dag_run_id = airflow_ops.trigger_run("ui_api_quotes", user_name="test")
    try:
        with create_session() as s:
            ti = s.scalars(select(TaskInstance).where(TaskInstance.dag_id == "ui_api_quotes",
                                                      TaskInstance.run_id == dag_run_id,
                                                      TaskInstance.pool == pool)).first()
            assert ti is not None, "no task of the group's DAG uses the source's pool"
            ti.state = TaskInstanceState.RUNNING
        usage = client.get(f"{PREFIX}/api/sources/jquants/pool", headers=h).json()
        assert usage == {**before, "running": before["running"] + 1, "open": before["open"] - 1}
        detail = client.get(f"{PREFIX}/sources/jquants").text
        assert (f"<code>{pool}</code>:\n    2 slot(s), {usage['running']} running, {usage['queued']} queued, "
                f"{usage['open']} open") in detail
        row = _section(client.get(f"{PREFIX}/sources").text, 'data-source="jquants"', "</tr>")
        assert f"2 slot(s): {usage['running']} running, {usage['queued']} queued" in row
        assert "pool missing" not in row
    finally:
        with create_session() as s:
            s.delete(s.scalar(select(DagRun).where(DagRun.dag_id == "ui_api_quotes", DagRun.run_id == dag_run_id)))
    client.cookies.clear()


def test_backfill_form_creates_an_airflow_backfill_and_rejects_a_reversed_range(client, warehouse_url):
    from sqlalchemy import func, select

    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect

    dag_id = "ui_page_backfill"  # its own DAG: the API test leaves a backfill of ui_api_quotes running
    with connect(warehouse_url) as conn:
        store.import_config(conn, {"job_groups": [
            {"name": dag_id, "data_source": "jquants", "dataset": "daily_quotes", "schedule": "0 19 * * 1-5",
             "timezone": "Asia/Tokyo", "parameters": {"universe": "all_listed"}, "is_enabled": True}]})
    sync_dags()

    def backfills() -> list[Backfill]:
        with create_session() as s:
            return list(s.scalars(select(Backfill).where(Backfill.dag_id == dag_id)))

    assert backfills() == []
    client.cookies.set("_token", token("USER"))
    page = client.get(f"{PREFIX}/groups/{dag_id}")
    assert page.status_code == 200 and 'id="backfill-form"' in page.text
    csrf = csrf_from(page.text)
    url = f"{PREFIX}/groups/{dag_id}/backfill"

    # reversed: the form comes back with the error next to the To field, the user's dates kept
    form = {"csrf_token": csrf, "from_date": "2026-03-06", "to_date": "2026-03-02", "reprocess_behavior": "none",
            "max_active_runs": "2"}
    r = client.post(url, data=form, follow_redirects=False)
    assert r.status_code == 422, r.text[:300]
    m = re.search(r'<div class="field-error" id="error-to_date">([^<]+)</div>', r.text)
    assert m and "before From" in m.group(1) and "2026-03-06" in m.group(1), r.text
    assert 'value="2026-03-06"' in r.text and 'value="2026-03-02"' in r.text
    assert 'id="max_active_runs" name="max_active_runs" value="2"' in r.text
    r = client.post(url, data={**form, "from_date": "March 2nd"}, follow_redirects=False)
    assert r.status_code == 422 and 'id="error-from_date"' in r.text and "YYYY-MM-DD" in r.text
    assert backfills() == []

    # a valid range: Mon 2026-03-02 .. Fri 2026-03-06 in Tokyo, five runs
    r = client.post(url, data={**form, "from_date": "2026-03-02", "to_date": "2026-03-06"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{PREFIX}/groups/{dag_id}"
    [bf] = backfills()
    shown = client.get(r.headers["location"]).text
    assert f"Backfill {bf.id} created: 5 run(s) for 2026-03-02 to 2026-03-06." in shown
    # Airflow selects by logical date (interval start): Fri 27 Feb 19:00 JST .. Thu 5 Mar 19:00 JST
    utc = ZoneInfo("UTC")
    as_utc = lambda d: (d if d.tzinfo else d.replace(tzinfo=utc)).astimezone(utc)  # noqa: E731
    assert as_utc(bf.from_date) == datetime(2026, 2, 27, 10, tzinfo=utc)
    assert as_utc(bf.to_date) == datetime(2026, 3, 5, 10, tzinfo=utc)
    assert bf.max_active_runs == 2
    with create_session() as s:
        ends = s.scalars(select(DagRun.data_interval_end).where(DagRun.dag_id == dag_id, DagRun.run_type == "backfill")
                         .order_by(DagRun.data_interval_end)).all()
        assert s.scalar(select(func.count()).select_from(DagRun).where(DagRun.backfill_id == bf.id)) == 5
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [(as_utc(e).astimezone(tokyo).date().isoformat(), as_utc(e).astimezone(tokyo).hour) for e in ends] == [
        (f"2026-03-0{d}", 19) for d in range(2, 7)]
    client.cookies.clear()


# -- secrets --------------------------------------------------------------------------------
def test_credentials_are_checked_and_no_secret_is_ever_rendered(client, monkeypatch):
    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

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
    from moomarkets.dev.localpg import free_port

    monkeypatch.setenv("MOOMARKETS_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    r = client.get(f"{PREFIX}/api/groups", headers=bearer("VIEWER"))
    assert r.status_code == 503 and "warehouse unavailable" in r.json()["detail"]
    client.cookies.set("_token", token("VIEWER"))
    r = client.get(f"{PREFIX}/groups")
    assert r.status_code == 503 and "warehouse database is unavailable" in r.text
