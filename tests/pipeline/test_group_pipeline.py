"""A job group is resolved once into a ready pipeline (no Airflow, no database)."""

from __future__ import annotations

import pytest

from moomarkets.config.models import DataSource, GroupSpec, JobGroup
from moomarkets.errors import ConfigError
from moomarkets.pipeline import GroupPipeline
from moomarkets.sources.jquants import source as jquants_source
from moomarkets.warehouse.datasets import get_dataset

SOURCE = DataSource(code="jq", name="J-Quants", kind="jquants", conn_id="jquants_default", config={"plan": "light"})


def group(**changes) -> JobGroup:
    base = dict(name="jp_bars", data_source="jq", dataset="daily_quotes", schedule="0 19 * * 1-5",
                timezone="Asia/Tokyo", parameters={"universe": "all_listed"})
    base.update(changes)
    return JobGroup(**base)


def test_resolve_looks_everything_up_once():
    pipe = GroupPipeline.resolve(GroupSpec(group=group(), source=SOURCE))
    assert pipe.source_class is jquants_source.JQuantsSource
    assert pipe.dataset is get_dataset("daily_quotes")
    assert pipe.rates == ("60/minute",)  # the light plan's published rate
    src = pipe.source()
    assert src.code == "jq" and src.credentials.secret is None and src.acquire is None


def test_resolve_validates_the_group():
    with pytest.raises(ConfigError, match="schedule"):
        GroupPipeline.resolve(GroupSpec(group=group(schedule="every day"), source=SOURCE))
    with pytest.raises(ConfigError, match="unknown data source"):
        GroupPipeline.resolve(GroupSpec(group=group(), source=None))


def test_an_unknown_dataset_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError) as ei:
        get_dataset("minute_bars")
    assert ei.value.field == "dataset" and "daily_quotes" in str(ei.value)
