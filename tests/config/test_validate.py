"""Validation of data sources and job groups: every bad input gets a specific error."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from moomarkets.config.models import DataSource, JobGroup
from moomarkets.config.validate import next_runs, validate_cron, validate_group, validate_source
from moomarkets.errors import ConfigError

SRC = DataSource(code="jquants", name="J-Quants", kind="jquants", conn_id="jquants_default", config={"plan": "light"})


def group(**kw) -> JobGroup:
    base = dict(
        name="jp_daily", data_source="jquants", dataset="daily_quotes", schedule="0 19 * * 1-5",
        timezone="Asia/Tokyo", parameters={"universe": "all_listed"},
    )
    base.update(kw)
    return JobGroup(**base)


def test_valid_group_is_normalized():
    g = validate_group(group(schedule=" 0  19 * * 1-5 ", parameters={"tickers": ["7203", "67580", "7203"]}), SRC)
    assert g.schedule == "0 19 * * 1-5"
    assert g.parameters == {"tickers": ["67580", "72030"]}


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"schedule": "61 19 * * *"}, "schedule", "not a valid cron"),
        ({"schedule": "0 19 * *"}, "schedule", "5 fields"),
        ({"schedule": "@sometimes"}, "schedule", "unknown cron preset"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA timezone"),
        ({"name": "Bad Name"}, "name", "lower-case"),
        ({"name": "new"}, "name", "reserved"),
        ({"name": "moomarkets_watchdog"}, "name", "a DAG shipped with MooMarkets"),
        ({"name": "x'; DROP TABLE job_groups;--"}, "name", "lower-case"),
        ({"dataset": "tick_data"}, "dataset", "has no dataset 'tick_data'"),
        ({"parameters": {"universe": "all_listed", "tickers": ["7203"]}}, "parameters", "exactly one"),
        ({"parameters": {"tickers": []}}, "parameters.tickers", "non-empty"),
        ({"parameters": {"tickers": ["7203; DROP"]}}, "parameters.tickers", "not a J-Quants code"),
        ({"parameters": {"universe": "everything"}}, "parameters.universe", "all_listed"),
        ({"parameters": {"universe": "all_listed", "foo": 1}}, "parameters", "unknown parameter"),
        ({"is_enabled": "yes"}, "is_enabled", "true or false"),
    ],
)
def test_bad_group_fields(changes, field, needle):
    with pytest.raises(ConfigError) as err:
        validate_group(group(**changes), SRC)
    assert err.value.field == field
    assert needle in str(err.value)


def test_group_needs_existing_active_source():
    with pytest.raises(ConfigError, match="unknown data source 'nope'"):
        validate_group(group(data_source="nope"), None)
    inactive = DataSource(**{**SRC.to_dict(), "is_active": False})
    validate_group(group(), inactive)  # fine to define
    with pytest.raises(ConfigError, match="is not active"):
        validate_group(group(), inactive, require_active=True)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"kind": "bloomberg"}, "unknown kind 'bloomberg'"),
        ({"code": "J-Quants"}, "lower-case"),
        ({"code": "new"}, "reserved"),
        ({"conn_id": "bad conn id"}, "not a valid Airflow connection id"),
        ({"config": {"api_key": "abc"}}, "looks like a secret"),
        ({"config": {"rate_limit": "sixty/minute"}}, "sixty/minute"),
        ({"config": {"plan": "gold"}}, "plan must be one of"),
        ({"config": {"plan": ["free"]}}, "plan must be one of"),
        ({"config": {"timeout": "abc"}}, "timeout must be a number of seconds"),
        ({"config": {"timeout": 0}}, "timeout must be a number of seconds"),
        ({"config": {"page_limit": -5}}, "unknown setting(s) page_limit"),
        ({"config": {"max_concurrency": 0}}, "max_concurrency"),
        ({"name": ""}, "must not be empty"),
    ],
)
def test_bad_sources(changes, needle):
    with pytest.raises(ConfigError) as err:
        validate_source(DataSource(**{**SRC.to_dict(), **changes}))
    assert needle in str(err.value)


def test_next_runs_follow_timezone():
    after = datetime(2026, 11, 20, 12, 0, tzinfo=ZoneInfo("UTC"))  # a Friday, 21:00 in Tokyo
    runs = next_runs(validate_cron("0 19 * * 1-5"), "Asia/Tokyo", after=after)
    assert [r.strftime("%a %d %H:%M") for r in runs] == ["Mon 23 19:00", "Tue 24 19:00", "Wed 25 19:00"]
