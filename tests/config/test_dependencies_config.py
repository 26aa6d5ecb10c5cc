"""Group dependencies in the config layer: one group's ``depends_on`` and ``upstream_timeout``
(validate_group), and the checks that need every group (config.dependencies): unknown upstreams,
cycles named in full, the dependants of a group, the order an import writes them in."""

from __future__ import annotations

import pytest

from moomarkets.config.dependencies import check_dependencies, dependency_order, downstream_of
from moomarkets.config.models import DataSource, JobGroup
from moomarkets.config.validate import validate_group
from moomarkets.errors import ConfigError

SRC = DataSource(code="jquants", name="J-Quants", kind="jquants", conn_id="jquants_default")


def group(**kw) -> JobGroup:
    base = dict(name="jp_daily", data_source="jquants", dataset="daily_quotes", schedule="0 19 * * 1-5",
                timezone="Asia/Tokyo", parameters={"universe": "all_listed"})
    return JobGroup(**{**base, **kw})


def test_defaults_are_no_upstreams_and_six_hours():
    g = validate_group(group(), SRC)
    assert g.depends_on == [] and g.upstream_timeout == "6h"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["jp_calendar", "jp_listed"], ["jp_calendar", "jp_listed"]),
        ("jp_calendar, jp_listed", ["jp_calendar", "jp_listed"]),  # the CLI's --depends-on a,b
        ("", []),  # --depends-on '' clears
        (None, []),
        ([" jp_calendar "], ["jp_calendar"]),
    ],
)
def test_depends_on_takes_a_list_or_a_comma_string_in_order(value, expected):
    assert validate_group(group(depends_on=value), SRC).depends_on == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["jp_daily"], "job group 'jp_daily': depends_on: a group cannot depend on itself"),
        ("jp_a,jp_a", "job group 'jp_daily': depends_on: 'jp_a' is listed twice"),
        (["Bad Name"], "job group 'jp_daily': depends_on: 'Bad Name' is not a job group name"),
        ({"jp_a": 1}, "job group 'jp_daily': depends_on: must be a list of job group names"),
        ([1, 2], "job group 'jp_daily': depends_on: must be a list of job group names"),
        ([f"g{i}" for i in range(21)], "job group 'jp_daily': depends_on: at most 20 upstream groups"),
    ],
)
def test_bad_depends_on_is_one_specific_line(value, message):
    with pytest.raises(ConfigError) as exc:
        validate_group(group(depends_on=value), SRC)
    assert str(exc.value) == message and exc.value.field == "depends_on"


@pytest.mark.parametrize(
    ("value", "expected"), [("6h", "6h"), ("90m", "1h30m"), (" 2H ", "2h"), ("1d", "1d"), ("", "6h"), (None, "6h")]
)
def test_upstream_timeout_is_normalized(value, expected):
    assert validate_group(group(upstream_timeout=value), SRC).upstream_timeout == expected


@pytest.mark.parametrize(
    ("value", "needle"), [("30s", "out of range (1m .. 7d)"), ("8d", "out of range"), ("soon", "not a duration"),
                          (6, "not a duration")]
)
def test_bad_upstream_timeout_names_the_field(value, needle):
    with pytest.raises(ConfigError) as exc:
        validate_group(group(upstream_timeout=value), SRC)
    assert exc.value.field == "upstream_timeout" and needle in str(exc.value)
    assert str(exc.value).startswith("job group 'jp_daily': upstream_timeout: ")


def test_unknown_upstream_names_the_group_and_the_upstream():
    with pytest.raises(ConfigError) as exc:
        check_dependencies({"jp_daily": ["nope"], "jp_calendar": []}, subject="jp_daily")
    assert str(exc.value) == "job group 'jp_daily': depends_on: unknown job group 'nope'"


def test_a_cycle_is_named_in_full_from_the_group_written():
    graph = {"jp_a": ["jp_b"], "jp_b": ["jp_c"], "jp_c": ["jp_a"], "jp_d": ["jp_a"]}
    with pytest.raises(ConfigError) as exc:
        check_dependencies(graph, subject="jp_b")
    assert str(exc.value) == "job group 'jp_b': depends_on: cycle jp_b -> jp_c -> jp_a -> jp_b"
    with pytest.raises(ConfigError) as exc:
        check_dependencies({"jp_a": ["jp_b"], "jp_b": ["jp_a"]})
    assert str(exc.value) == "job group 'jp_a': depends_on: cycle jp_a -> jp_b -> jp_a"


def test_a_diamond_is_no_cycle_and_a_long_chain_does_not_recurse():
    check_dependencies({"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]})
    chain = {f"g{i}": [f"g{i - 1}"] if i else [] for i in range(5000)}
    check_dependencies(chain)
    chain["g0"] = ["g4999"]
    with pytest.raises(ConfigError, match=r"cycle g0 -> g4999 -> .* -> g1 -> g0$"):
        check_dependencies(chain, subject="g0")


def test_downstream_of_lists_the_direct_dependants():
    graph = {"cal": [], "quotes": ["cal"], "topix": ["cal", "quotes"], "other": []}
    assert downstream_of(graph, "cal") == ["quotes", "topix"]
    assert downstream_of(graph, "quotes") == ["topix"]
    assert downstream_of(graph, "other") == []


def test_dependency_order_puts_upstreams_first_and_keeps_the_file_order_otherwise():
    # a file listing a group before the one it depends on (and one upstream already stored: "stored")
    graph = {"quotes": ["calendar", "stored"], "listed": [], "calendar": [], "topix": ["quotes"]}
    assert dependency_order(graph) == ["calendar", "quotes", "listed", "topix"]
