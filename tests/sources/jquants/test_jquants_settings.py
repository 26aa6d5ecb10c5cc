"""J-Quants constants: the plan rates (jpx-jquants.com/en/spec/rate-limits) and one home for paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from moomarkets.errors import ConfigError
from moomarkets.ratelimit import parse_rates
from moomarkets.sources.jquants import JQuantsSource
from moomarkets.sources.jquants import client, source
from moomarkets.sources.jquants.settings import DEFAULT_BASE_URL, PATHS, PLAN_RATES, VALIDATE_CALLS
from moomarkets.sources.registry import get_source_class


def test_every_plan_rate_is_one_per_minute_window_growing_with_the_tier():
    """A preset the limiter cannot parse, or a tier typed out of order, would fail here."""
    windows = [parse_rates(PLAN_RATES[plan]) for plan in ("free", "light", "standard", "premium")]
    assert all(len(w) == 1 and w[0].interval == 60_000 for w in windows)
    limits = [w[0].limit for w in windows]
    assert limits == sorted(limits) and len(set(limits)) == 4


def test_the_plan_sets_the_rate_unless_rate_limit_is_given():
    assert JQuantsSource.rate_limit({}) == ["5/minute"]  # no plan: the Free plan's rate, the safe guess
    assert JQuantsSource.rate_limit({"plan": "light"}) == ["60/minute"]
    assert JQuantsSource.rate_limit({"plan": "premium"}) == ["500/minute"]
    assert JQuantsSource.rate_limit({"plan": "light", "rate_limit": "30/minute"}) == ["30/minute"]
    assert JQuantsSource.rate_limit({"rate_limit": ["5/second", "60/minute"]}) == ["5/second", "60/minute"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"plan": "gold"}, "plan must be one of free, light, standard, premium, got 'gold'"),
        ({"rate_limit": "60/minutes"}, "'60/minutes' is not N/second|minute|hour|day"),
    ],
)
def test_a_bad_plan_or_rate_is_a_config_error(config, message):
    with pytest.raises(ConfigError) as err:
        JQuantsSource.validate_config(config)
    assert message in str(err.value)


def test_base_url_and_paths_have_one_home():
    assert DEFAULT_BASE_URL == "https://api.jquants.com/v2"
    package = Path(source.__file__).parent
    for literal in ('"https://api.jquants.com', *(f'"{p}"' for p in PATHS.values())):
        homes = [f.name for f in sorted(package.glob("*.py")) if literal in f.read_text(encoding="utf-8")]
        assert homes == ["settings.py"], (literal, homes)
    assert client.DEFAULT_BASE_URL is DEFAULT_BASE_URL and source.PATHS is PATHS
    assert {path for path, _ in VALIDATE_CALLS.values()} == set(PATHS.values())
    assert set(VALIDATE_CALLS) == set(PATHS) == set(JQuantsSource.datasets)


def test_the_registry_and_the_package_export_the_same_class():
    assert get_source_class("jquants") is JQuantsSource
