"""Alert settings as part of a source's and a group's definition: validated and normalized with the
rest of it, one line naming the owner and the field when wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from moomarkets.config.models import DataSource, JobGroup
from moomarkets.config.validate import validate_group, validate_source
from moomarkets.errors import ConfigError

SRC = DataSource(code="jquants", name="J-Quants", kind="jquants", conn_id="jquants_default")
GROUP = JobGroup(name="jp_daily", data_source="jquants", dataset="daily_quotes", schedule="0 19 * * 1-5",
                 parameters={"universe": "all_listed"})


def test_source_and_group_alerts_are_normalized():
    src = validate_source(DataSource(**{**SRC.to_dict(), "alerts": {
        "on": "late, failure", "late_after": "120m",
        "targets": [{"type": "email", "conn_id": "smtp_alerts", "to": "a@example.com; b@example.com"}]}}))
    assert src.alerts == {"on": ["failure", "late"], "late_after": "2h",
                          "targets": [{"type": "email", "conn_id": "smtp_alerts",
                                       "to": ["a@example.com", "b@example.com"]}]}
    g = validate_group(JobGroup(**{**GROUP.to_dict(), "alerts": {"on": []}}), src)
    assert g.alerts == {"on": []}  # silences the group, whatever the source says
    assert validate_group(GROUP, src).alerts == {} and validate_source(SRC).alerts == {}


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ("page me", "alerts: must be a mapping (keys: on, late_after, targets)"),
        ({"to": "x@example.com"}, "alerts: unknown key(s) to (allowed: late_after, on, targets)"),
        ({"on": ["fire"]}, "alerts.on: unknown alert kind(s) fire"),
        ({"late_after": "soon"}, "alerts.late_after: 'soon' is not a duration"),
        ({"targets": [{"type": "pager", "conn_id": "p"}]}, "alerts.targets[0]: type must be one of email, slack"),
        ({"targets": [{"type": "email", "conn_id": "smtp"}]}, "alerts.targets[0]: to must list one or more"),
    ],
)
def test_bad_alerts_name_the_owner_and_the_field(alerts, message):
    with pytest.raises(ConfigError) as exc:
        validate_group(JobGroup(**{**GROUP.to_dict(), "alerts": alerts}), SRC)
    assert str(exc.value).startswith(f"job group 'jp_daily': {message}")
    with pytest.raises(ConfigError) as exc:
        validate_source(DataSource(**{**SRC.to_dict(), "alerts": alerts}))
    assert str(exc.value).startswith(f"data source 'jquants': {message}")
    assert exc.value.field.startswith("alerts")


@pytest.mark.parametrize("value", ["99999999999999999999d", "0s", "8d"])
def test_out_of_range_durations_are_one_config_error(value):
    from moomarkets.config.durations import parse_duration

    with pytest.raises(ConfigError, match="out of range"):
        parse_duration(value, field="alerts.late_after", maximum=timedelta(days=7))
