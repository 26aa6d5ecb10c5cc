"""Fixtures of the tests that run a group's DAG against the local fake J-Quants server."""

from __future__ import annotations

import json

import pytest
import yaml
from dagtest import CONFIG

from moomarkets.warehouse import config_store
from moomarkets.warehouse.db import connect

FAKE_KEY = "test-key-123456"


@pytest.fixture
def fake():
    """The fake J-Quants v2 server (small pages: whole-market days span several); a module may
    override it with other settings."""
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=FAKE_KEY, page_size=20)) as (base_url, state):
        yield base_url, state


@pytest.fixture
def group_env(warehouse_url, airflow_db, fake, monkeypatch, tmp_path):
    """The example whole-market group in a fresh warehouse, its Connection pointing at the fake."""
    base_url, _ = fake
    monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_JQUANTS_DEFAULT", json.dumps({"conn_type": "jquants", "host": base_url, "password": FAKE_KEY})
    )
    with connect(warehouse_url) as conn:
        config_store.import_config(conn, yaml.safe_load(CONFIG))
    return warehouse_url
