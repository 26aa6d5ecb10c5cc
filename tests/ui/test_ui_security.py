"""Security of the management UI inside Airflow's real api-server app: every route refuses anonymous
callers and bad tokens, reading needs DAG read access, writes need edit (or run) rights for the DAG
concerned and a CSRF token of the session, and no secret ever reaches a page or a response."""

from __future__ import annotations

import json
import re

import pytest
from ui_helpers import PREFIX, app_routes, bearer, csrf_from, token

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

SECRET = "sekret-key-7f3a9c"


def test_every_route_refuses_anonymous_and_bad_tokens(client, ui_subapp):
    routes = app_routes(ui_subapp)
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
    for method, path, template in app_routes(ui_subapp):
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
    writes = [(m, p) for m, p, _ in app_routes(ui_subapp) if m != "GET"]
    assert len(writes) >= 15
    for method, path in writes:
        real = path.replace("/x", "/ui_api_quotes" if "group" in path else "/jquants")
        r = client.request(method, PREFIX + real, json={}, follow_redirects=False)
        assert r.status_code == 403, (method, real, r.status_code)
        r = client.request(method, PREFIX + real, data={"csrf_token": "0.bogus"}, follow_redirects=False)
        assert r.status_code == 403, (method, real, r.status_code)
    client.cookies.clear()


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
