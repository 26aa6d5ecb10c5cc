"""Rate-limit specs: parsing and validation messages (no database). J-Quants plan rates: tests/sources/jquants."""

from __future__ import annotations

import pytest

from moomarkets.ratelimit import (
    RateSpec,
    default_margin_ms,
    describe,
    parse_rate,
    parse_rates,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("60/minute", (60, 60_000)),
        ("5/second", (5, 1_000)),
        ("1000/hour", (1000, 3_600_000)),
        ("100/day", (100, 86_400_000)),
        ("5/s", (5, 1_000)),
        ("5/m", (5, 60_000)),
        ("5/h", (5, 3_600_000)),
        ("5/d", (5, 86_400_000)),
        ("20/10s", (20, 10_000)),
        ("20/2second", (20, 2_000)),
        (" 60 / Minute ", (60, 60_000)),
    ],
)
def test_good_specs(spec, expected):
    assert parse_rate(spec) == RateSpec(*expected)
    assert parse_rates(spec) == [RateSpec(*expected)]


def test_rate_spec_is_rate_like():
    rate = parse_rates("60/minute")[0]
    assert (rate.limit, rate.interval) == (60, 60_000)
    assert str(rate) == "60/minute"
    assert str(RateSpec(20, 10_000)) == "20/10s"


def test_several_windows_sorted_shortest_first():
    assert parse_rates(["60/minute", "5/second"]) == [RateSpec(5, 1000), RateSpec(60, 60_000)]
    assert parse_rates(("5/second", "60/minute", "1000/hour"))[-1] == RateSpec(1000, 3_600_000)
    assert parse_rates("5/second, 60/minute") == [RateSpec(5, 1000), RateSpec(60, 60_000)]
    assert describe(parse_rates(["60/minute", "5/second"])) == "5/second, 60/minute"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("60/minutes", "rate_limit: '60/minutes' is not N/second|minute|hour|day"),
        ("60 per minute", "rate_limit: '60 per minute' is not N/second|minute|hour|day"),
        ("60", "rate_limit: '60' is not N/second|minute|hour|day"),
        ("/minute", "rate_limit: '/minute' is not N/second|minute|hour|day"),
        ("-1/minute", "rate_limit: '-1/minute' is not N/second|minute|hour|day"),
        ("1.5/second", "rate_limit: '1.5/second' is not N/second|minute|hour|day"),
        ("60/week", "rate_limit: '60/week' is not N/second|minute|hour|day"),
        ("0/second", "'0/second' must allow at least 1 request"),
        ("5/0s", "'5/0s' must allow at least 1 request"),
        ("", "rate_limit: '' is not N/second|minute|hour|day"),
        ([], "rate_limit: empty"),
        (60, "rate_limit: 60 must be a spec like '60/minute'"),
        ({"a": 1}, "must be a spec like '60/minute'"),
        ([60], "rate_limit: 60 is not N/second|minute|hour|day"),
        (["5/second", "6/second"], "'5/second' and '6/second' limit the same window"),
        (["100/second", "60/minute"], "'100/second' can never bind next to '60/minute'"),
        (["5/second", "600/minute"], "'600/minute' can never bind next to '5/second'"),
    ],
)
def test_bad_specs_one_line_messages(spec, message):
    with pytest.raises(ValueError) as err:
        parse_rates(spec)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith("rate_limit: ")


def test_default_margin():
    assert default_margin_ms(parse_rates("20/2s")) == 60  # 3 % of the window
    assert default_margin_ms(parse_rates("1/second")) == 50  # floor
    assert default_margin_ms(parse_rates(["5/second", "60/minute"])) == 50  # the shortest window counts
    assert default_margin_ms(parse_rates("60/minute")) == 250  # cap
    assert default_margin_ms([RateSpec(1, 60)]) == 30  # never more than half a (tiny) window
