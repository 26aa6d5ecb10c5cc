"""A group's ``parameters.checks``: validated before the source sees the parameters, one specific
error per problem, kept (normalized) in the group's parameters."""

from __future__ import annotations

import pytest

from moomarkets.config.checks import DATASET_CHECKS, dataset_checks
from moomarkets.config.models import DataSource, JobGroup
from moomarkets.config.validate import validate_group
from moomarkets.errors import ConfigError
from moomarkets.warehouse.datasets import get_dataset

JQ = DataSource(code="jquants", name="J-Quants", kind="jquants", conn_id="jquants_default")
YF = DataSource(code="yahoo", name="Yahoo", kind="yfinance", conn_id="yfinance_default")


def group(checks, dataset="daily_quotes", parameters=None) -> JobGroup:
    params = dict(parameters or {"universe": "all_listed"})
    params["checks"] = checks
    return JobGroup(name="g", data_source="jquants", dataset=dataset, schedule="0 19 * * 1-5",
                    timezone="Asia/Tokyo", parameters=params)


def test_valid_checks_are_kept_normalized_and_the_source_validates_the_rest():
    g = validate_group(group({"row_count_drop": {"severity": "error", "max_drop": 0.02},
                              "completeness": {"max_missing": 3}, "price_sanity": {"severity": "off"}}), JQ)
    assert g.parameters == {"universe": "all_listed", "checks": {
        "row_count_drop": {"severity": "error", "max_drop": 0.02}, "completeness": {"max_missing": 3},
        "price_sanity": {"severity": "off"}}}
    # ints are fine where a fraction is expected; an empty mapping leaves no trace
    assert validate_group(group({"row_count_drop": {"max_drop": 0}}), JQ).parameters["checks"] == {
        "row_count_drop": {"max_drop": 0.0}}
    assert "checks" not in validate_group(group({}), JQ).parameters


@pytest.mark.parametrize(
    ("checks", "field", "needle"),
    [
        ([], "parameters.checks", "must be a mapping"),
        ({"freshness": {}}, "parameters.checks.freshness", "unknown check 'freshness' for dataset 'daily_quotes'"),
        ({"price_sanity": "error"}, "parameters.checks.price_sanity", "must be a mapping"),
        ({"price_sanity": {"severity": "fatal"}}, "parameters.checks.price_sanity.severity", "error, warn, off"),
        ({"price_sanity": {"max_drop": 0.1}}, "parameters.checks.price_sanity", "unknown setting 'max_drop'"),
        ({"row_count_drop": {"max_drop": 1.5}}, "parameters.checks.row_count_drop.max_drop", "from 0 to 1"),
        ({"row_count_drop": {"max_drop": "5%"}}, "parameters.checks.row_count_drop.max_drop", "a number"),
        ({"row_count_drop": {"max_drop": True}}, "parameters.checks.row_count_drop.max_drop", "a number"),
        ({"completeness": {"max_missing": 1.5}}, "parameters.checks.completeness.max_missing", "an integer"),
        ({"completeness": {"max_missing": -1}}, "parameters.checks.completeness.max_missing", "an integer"),
        ({"adjusted_consistency": {"tolerance": -0.1}}, "parameters.checks.adjusted_consistency.tolerance", "a number"),
    ],
)
def test_bad_checks_get_one_specific_error(checks, field, needle):
    with pytest.raises(ConfigError) as err:
        validate_group(group(checks), JQ)
    assert err.value.field == field
    assert needle in str(err.value)


def test_checks_are_validated_before_the_source_parameters():
    bad_both = group({"nope": {}}, parameters={"universe": "everything"})
    with pytest.raises(ConfigError) as err:
        validate_group(bad_both, JQ)
    assert err.value.field == "parameters.checks.nope"


def test_a_check_must_be_declared_for_the_dataset_and_the_source_kind():
    with pytest.raises(ConfigError, match="unknown check 'price_sanity' for dataset 'fin_summary'.*none"):
        validate_group(group({"price_sanity": {}}, dataset="fin_summary"), JQ)
    yahoo = JobGroup(name="g", data_source="yahoo", dataset="daily_quotes", schedule="0 22 * * 1-5",
                     parameters={"tickers": ["AAPL"], "checks": {"completeness": {"severity": "warn"}}})
    with pytest.raises(ConfigError, match="unknown check 'completeness'.*yfinance"):
        validate_group(yahoo, YF)
    yahoo.parameters["checks"] = {"adjusted_consistency": {"severity": "warn"}}
    assert validate_group(yahoo, YF).parameters["checks"] == {"adjusted_consistency": {"severity": "warn"}}


def test_every_dataset_table_carries_its_declared_checks():
    assert {c.name for c in get_dataset("daily_quotes").checks} == {
        "price_sanity", "completeness", "adjusted_consistency", "row_count_drop"}
    assert get_dataset("fin_summary").checks == ()
    for name, declared in DATASET_CHECKS.items():
        assert get_dataset(name).checks == dataset_checks(name) == declared
