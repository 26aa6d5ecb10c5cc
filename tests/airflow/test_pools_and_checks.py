"""Pools follow the data sources through the CLI (create, resize, describe, check), against
Airflow's real metadata DB; and a credential check is a real request that waits its turn in the
source's shared rate limit like every other request."""

from __future__ import annotations

import json

import psycopg
import pytest

from moomarkets.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

CONFIG = """
data_sources:
  - {code: pooltest, name: Pool test, kind: jquants, conn_id: pooltest_conn, is_active: true,
     config: {rate_limit: 30/minute, max_concurrency: 2}}
job_groups:
  - {name: pooltest_quotes, data_source: pooltest, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


def test_cli_creates_resizes_and_checks_the_sources_pool(airflow_db, warehouse_url, tmp_path, capsys):
    from airflow.models.pool import Pool

    f = tmp_path / "c.yaml"
    f.write_text(CONFIG)
    assert main(["import", str(f)]) == 0
    pool = Pool.get_pool("moomarkets_pooltest")
    assert pool is not None and pool.slots == 2
    assert "rate limit 30/minute" in pool.description

    assert main(["sources", "update", "pooltest", "--config", '{"rate_limit": "20/minute", "max_concurrency": 3}']) == 0
    pool = Pool.get_pool("moomarkets_pooltest")
    assert pool.slots == 3 and "rate limit 20/minute" in pool.description
    capsys.readouterr()
    assert main(["pools", "check"]) == 0

    Pool.create_or_update_pool("moomarkets_pooltest", 7, "hand-edited", include_deferred=False)
    assert main(["pools", "check"]) == 1
    assert "pool moomarkets_pooltest has 7 slots, config says 3" in capsys.readouterr().out
    assert main(["pools", "sync"]) == 0
    assert Pool.get_pool("moomarkets_pooltest").slots == 3
    assert main(["pools", "check"]) == 0


def test_pools_sync_fails_loudly_when_airflow_is_unreachable(warehouse_url, tmp_path, capsys, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text(CONFIG)
    assert main(["--no-airflow", "import", str(f)]) == 0
    monkeypatch.setattr("moomarkets.airflow.pools.sync_pools", lambda sources: (_ for _ in ()).throw(OSError("db down")))
    assert main(["pools", "sync"]) == 1
    assert "error: could not sync pools in Airflow (OSError: db down)" in capsys.readouterr().err


def test_credential_check_takes_a_token_from_the_shared_limit(airflow_db, warehouse_url, tmp_path, monkeypatch):
    from moomarkets.airflow import ops as airflow_ops
    from moomarkets.warehouse import config_store as store
    from moomarkets.warehouse.db import connect
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    f = tmp_path / "c.yaml"
    f.write_text(CONFIG)
    assert main(["--no-airflow", "import", str(f)]) == 0
    with connect(warehouse_url) as conn:
        src = store.get_source(conn, "pooltest")
    with running_fake(FakeConfig(api_key="k-123")) as (base_url, _):
        monkeypatch.setenv("AIRFLOW_CONN_POOLTEST_CONN",
                           json.dumps({"conn_type": "jquants", "host": base_url, "password": "k-123"}))
        airflow_ops.clear_credential_cache()
        for _ in range(2):
            check = airflow_ops.check_credentials(src, force=True)
            assert check.ok is True, check.message
    with psycopg.connect(warehouse_url) as conn:
        (granted,) = conn.execute('SELECT count(*) FROM "ratelimit___mm_pooltest"').fetchone()
    assert granted == 2  # each check made exactly one request, and each took a token first


def test_credential_check_never_overruns_a_used_up_limit(warehouse_url, monkeypatch):
    from moomarkets.pipeline import credentials
    from moomarkets.ratelimit import SourceRateLimiter
    from moomarkets.sources.base import Credentials
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    monkeypatch.setattr(credentials, "LIMITER_TIMEOUT", 0.5)
    with SourceRateLimiter("busy", "1/minute", warehouse_url) as limiter:
        limiter.acquire()  # a running task took the only token of this minute
    with running_fake(FakeConfig(api_key="k-9")) as (base_url, state):
        outcome = credentials.check_source_credentials(
            "jquants", "busy", {"rate_limit": "1/minute"}, Credentials(secret="k-9", host=base_url), db_url=warehouse_url
        )
        assert outcome == (None, "busy", "")
        assert state.count() == 0  # no request left for the API
        outcome = credentials.check_source_credentials(
            "jquants", "other", {"rate_limit": "1/minute"}, Credentials(secret="bad-k", host=base_url), db_url=warehouse_url
        )
        assert outcome.ok is False and outcome.reason == "rejected" and "bad-k" not in outcome.detail
        assert state.count() == 1
