"""Helpers of the management-UI tests (imported by tests/ui/conftest.py and the test modules):
tokens minted by Airflow's auth manager, CSRF tokens scraped from pages, DAG parsing, page slices."""

from __future__ import annotations

import re

PREFIX = "/moomarkets"
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 600/minute, max_concurrency: 2}}
job_groups:
  - {name: ui_api_quotes, description: All listed issues, data_source: jquants, dataset: daily_quotes,
     schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


def token(role: str, username: str | None = None, seconds: int = 3600) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username=username or role.lower(), role=role), expiration_time_in_seconds=seconds
    )


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


def app_routes(subapp):
    from fastapi.routing import APIRoute

    out = []
    for route in subapp.routes:
        assert isinstance(route, APIRoute), f"unexpected non-API route {route!r}: it would escape the auth checks"
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path, route.path))
    return out


def section(html: str, start: str, end: str) -> str:
    i = html.index(start)
    return html[i:html.index(end, i)]
