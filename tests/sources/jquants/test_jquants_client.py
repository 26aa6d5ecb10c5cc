"""JQuantsClient against the local fake J-Quants v2 server (in-thread, real HTTP)."""

from __future__ import annotations

import logging
import math
import socket
from datetime import date

import pytest

from moomarkets.errors import (
    AuthError,
    PermanentSourceError,
    PlanNotCoveredError,
    RetryableSourceError,
    SourceError,
)
from moomarkets.testing import jquants_data as fd
from moomarkets.sources.jquants.client import JQuantsClient
from moomarkets.testing.jquants_fake import FakeConfig, running_fake

KEY = "sk-live-SECRET-7f3a9c2e41d8b6"
DAY = date(2026, 1, 5)
PAGE = 10


@pytest.fixture(scope="module")
def fake():
    with running_fake(FakeConfig(api_key=KEY, page_size=PAGE)) as (url, state):
        yield url, state


@pytest.fixture
def server(fake):
    url, state = fake
    state.reset()
    yield url, state
    state.reset()


class Recorder:
    def __init__(self):
        self.calls: list = []

    def __call__(self, *args):
        self.calls.append(args[0] if args else None)


def make_client(url, key=KEY, **kw):
    kw.setdefault("sleep", Recorder())
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 5)
    return JQuantsClient(key, url, **kw)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v2"


# -- happy path -------------------------------------------------------------------------------
def test_pagination_is_followed_to_the_end(server):
    url, state = server
    acquire = Recorder()
    client = make_client(url, acquire=acquire)
    rows = client.get_all("/equities/bars/daily", {"date": DAY.strftime("%Y%m%d")})
    expected = fd.daily_bars_for_date(DAY)
    assert rows == expected
    pages = math.ceil(len(expected) / PAGE)
    assert pages >= 3
    assert state.count() == pages == client.requests_made == len(acquire.calls)
    keys = [p.get("pagination_key") for _, p in state.requests]
    assert keys[0] is None and all(keys[1:]) and len(set(keys[1:])) == pages - 1
    assert all(p["date"] == "20260105" for _, p in state.requests)  # same query sent back
    assert all(h.get("accept-encoding") == "gzip" for h in state.headers)


def test_iter_pages_yields_each_page(server):
    url, _ = server
    pages = list(make_client(url).iter_pages("/equities/bars/daily", {"code": "7203", "from": "20260105",
                                                                       "to": "20260130"}))
    assert [len(p) for p in pages][:-1] == [PAGE] * (len(pages) - 1)
    assert sum(pages, []) == fd.daily_bars_for_code("72030", "2026-01-05", "2026-01-30")


def test_empty_result_is_one_request(server):
    url, state = server
    assert make_client(url).get_all("/equities/bars/daily", {"date": "2026-01-03"}) == []
    assert state.count() == 1


# -- permanent errors -------------------------------------------------------------------------
def test_bad_key_fails_fast_with_auth_error(server):
    url, state = server
    with pytest.raises(AuthError) as ei:
        make_client(url, key="wrong-key-0000000").get_all("/equities/bars/daily", {"date": "20260105"})
    assert "invalid or expired" in str(ei.value)
    assert not ei.value.retryable
    assert state.count() == 1


def test_400_carries_the_server_message(server):
    url, state = server
    with pytest.raises(PermanentSourceError) as ei:
        make_client(url).get_all("/equities/bars/daily", {})
    assert "This API requires at least 1 parameter as follows; 'date','code'." in str(ei.value)
    assert ei.value.server_message == "This API requires at least 1 parameter as follows; 'date','code'."
    assert ei.value.status_code == 400 and not ei.value.retryable
    assert state.count() == 1


def test_403_plan_not_covered_is_not_retried():
    cfg = FakeConfig(api_key=KEY, plan_endpoints={"/equities/bars/daily"}, plan_to=date(2026, 8, 31))
    with running_fake(cfg) as (url, state):
        client = make_client(url)
        with pytest.raises(PlanNotCoveredError) as ei:
            client.get_all("/fins/summary", {"code": "72030"})
        assert "plan" in str(ei.value) and state.count() == 1
        with pytest.raises(PlanNotCoveredError) as ei:
            client.get_all("/equities/bars/daily", {"date": "20261120"})
        assert "subscription covers" in str(ei.value) and state.count() == 2
        assert client.get_all("/equities/bars/daily", {"date": "20260105"}) == fd.daily_bars_for_date(DAY)


def test_wrong_path_is_a_clear_permanent_error(server):
    url, state = server
    base_without_v2 = url[: -len("/v2")]
    with pytest.raises(PermanentSourceError) as ei:
        make_client(base_without_v2).get_all("/equities/bars/daily", {"date": "20260105"})
    assert not isinstance(ei.value, (AuthError, PlanNotCoveredError))
    assert "/v2" in str(ei.value)


# -- retries ----------------------------------------------------------------------------------
def test_429_burst_then_success_backs_off_and_throttles(server):
    url, state = server
    state.inject("429", 3)
    sleep, throttle = Recorder(), Recorder()
    client = make_client(url, sleep=sleep, on_throttle=throttle, backoff_base=0.5, backoff_max=100)
    rows = client.get_all("/markets/calendar", {"from": "20260101", "to": "20260110"})
    assert rows == fd.calendar_rows("2026-01-01", "2026-01-10")
    assert state.statuses == [429, 429, 429, 200]
    assert len(sleep.calls) == 3 and throttle.calls == sleep.calls
    for n, delay in enumerate(sleep.calls, start=1):  # full jitter below the exponential cap
        assert 0 <= delay <= 0.5 * 2 ** (n - 1)


def test_persistent_429_gives_retryable_rate_limited(server):
    url, state = server
    state.inject("429", 50)
    throttle = Recorder()
    client = make_client(url, max_attempts=4, on_throttle=throttle)
    with pytest.raises(RetryableSourceError) as ei:
        client.get_all("/markets/calendar", {})
    assert "rate limited" in str(ei.value) and ei.value.retryable
    assert state.count() == 4 == client.requests_made
    assert len(throttle.calls) == 3


def test_5xx_then_success(server):
    url, state = server
    for kind in ("500", "502", "503"):
        state.inject(kind)
    client = make_client(url)
    assert client.get_all("/indices/bars/daily/topix", {"from": "20260105", "to": "20260109"})
    assert state.statuses == [500, 502, 503, 200]


def test_persistent_500_after_max_attempts(server):
    url, state = server
    state.inject("500", 50)
    sleep = Recorder()
    with pytest.raises(RetryableSourceError) as ei:
        make_client(url, max_attempts=3, sleep=sleep).get_all("/markets/calendar", {})
    assert "server error" in str(ei.value) and "HTTP 500" in str(ei.value)
    assert state.count() == 3 and len(sleep.calls) == 2


@pytest.mark.parametrize("kind", ["garbage", "truncated", "nodata"])
def test_malformed_body_is_retried(server, kind):
    url, state = server
    state.inject(kind, 2)
    assert make_client(url).get_all("/markets/calendar", {"from": "20260105", "to": "20260105"}) == [
        {"Date": "2026-01-05", "HolDiv": "1"}
    ]
    assert state.count() == 3


@pytest.mark.parametrize("kind", ["garbage", "truncated", "nodata"])
def test_persistent_malformed_body_is_a_clear_error(server, kind):
    url, state = server
    state.inject(kind, 50)
    with pytest.raises(RetryableSourceError) as ei:
        make_client(url, max_attempts=2).get_all("/markets/calendar", {})
    assert "malformed response" in str(ei.value)
    assert state.count() == 2


def test_timeout_is_retried(server):
    url, state = server
    state.inject("slow", 1, seconds=1.0)
    client = make_client(url, timeout=0.25)
    assert client.get_all("/markets/calendar", {"from": "20260105", "to": "20260106"})
    assert client.requests_made == 2
    state.inject("slow", 2, seconds=1.0)
    with pytest.raises(RetryableSourceError) as ei:
        make_client(url, timeout=0.25, max_attempts=2).get_all("/markets/calendar", {})
    assert "timed out" in str(ei.value)


def test_pagination_loop_is_detected(server):
    url, state = server
    state.inject("loop_pagination", 10)
    with pytest.raises(PermanentSourceError) as ei:
        make_client(url).get_all("/equities/bars/daily", {"date": "20260105"})
    assert "pagination loop" in str(ei.value) and not ei.value.retryable
    assert state.count() == 2


def test_max_pages_is_enforced(server):
    url, state = server
    with pytest.raises(PermanentSourceError) as ei:
        make_client(url, max_pages=2).get_all("/equities/bars/daily", {"date": "20260105"})
    assert "max_pages=2" in str(ei.value)
    assert state.count() == 2


def test_acquire_is_called_once_per_http_request(server):
    url, state = server
    state.inject("500", 2)
    state.inject("429", 1)
    acquire = Recorder()
    client = make_client(url, acquire=acquire)
    client.get_all("/equities/bars/daily", {"date": "20260106"})
    client.get_all("/markets/calendar", {"from": "20260105", "to": "20260105"})
    assert len(acquire.calls) == state.count() == client.requests_made
    assert state.count() == 3 + math.ceil(len(fd.daily_bars_for_date("2026-01-06")) / PAGE) + 1


# -- the key never leaks ----------------------------------------------------------------------
def test_api_key_never_appears_in_errors_logs_or_repr(server, caplog):
    url, state = server
    caplog.set_level(logging.DEBUG)
    errors: list[SourceError] = []

    def run(client, path="/markets/calendar", params=None):
        with pytest.raises(SourceError) as ei:
            client.get_all(path, params or {})
        errors.append(ei.value)

    state.inject("400", 1, message=f"bad parameter near x-api-key={KEY}")  # a server echoing the key
    run(make_client(url))
    state.inject("500", 50, message=f"upstream failed for {KEY}")
    run(make_client(url, max_attempts=2))
    state.reset()
    state.inject("429", 50)
    run(make_client(url, max_attempts=2))
    state.reset()
    state.inject("garbage", 50)
    run(make_client(url, max_attempts=2))
    state.reset()
    state.inject("403", 1, message=f"plan does not cover this for key {KEY}")
    run(make_client(url))
    run(make_client(url, key=KEY + "x"))  # a wrong key that contains the right one
    run(make_client(closed_port_url(), max_attempts=2))
    assert len(errors) == 7
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc)
        assert KEY not in exc.server_message
        assert exc.__cause__ is None and exc.__context__ is None
    assert "***" in str(errors[0])
    assert caplog.records and KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    client = make_client(url)
    assert KEY not in repr(client) and KEY not in str(client)


# -- validate_credentials ---------------------------------------------------------------------
def test_validate_credentials_ok_is_one_request(server):
    url, state = server
    make_client(url).validate_credentials()
    assert state.count() == 1 and state.statuses == [200]


def test_validate_credentials_bad_key(server):
    url, state = server
    with pytest.raises(AuthError) as ei:
        make_client(url, key="not-the-key-123").validate_credentials()
    assert "API key" in str(ei.value) and state.count() == 1


def test_validate_credentials_empty_key_sends_nothing(server):
    url, state = server
    with pytest.raises(AuthError) as ei:
        make_client(url, key="").validate_credentials()
    assert "no J-Quants API key" in str(ei.value)
    assert state.count() == 0


def test_validate_credentials_plan_not_covered():
    with running_fake(FakeConfig(api_key=KEY, plan_endpoints={"/equities/bars/daily"})) as (url, state):
        with pytest.raises(PlanNotCoveredError) as ei:
            make_client(url).validate_credentials()
        assert "plan" in str(ei.value) and state.count() == 1


def test_validate_credentials_network_down():
    url = closed_port_url()
    sleep = Recorder()
    with pytest.raises(RetryableSourceError) as ei:
        make_client(url, sleep=sleep).validate_credentials()
    exc = ei.value
    assert not isinstance(exc, (AuthError, PlanNotCoveredError))
    assert "cannot reach J-Quants" in str(exc) and "connection refused" in str(exc) and url in str(exc)
    assert len(sleep.calls) == 1  # validation retries network trouble once only


# validate_credentials(dataset): one request to that dataset's endpoint -----------------------
DATASET_PATHS = {
    "listed_info": "/equities/master",
    "daily_quotes": "/equities/bars/daily",
    "fin_summary": "/fins/summary",
    "trading_calendar": "/markets/calendar",
    "index_quotes": "/indices/bars/daily",
}


@pytest.mark.parametrize("dataset", sorted(DATASET_PATHS))
def test_validate_credentials_for_a_dataset_is_one_request_to_its_endpoint(server, dataset):
    url, state = server
    make_client(url).validate_credentials(dataset)
    assert [p for p, _ in state.requests] == [DATASET_PATHS[dataset]] and state.statuses == [200]


FREE_LIKE = dict(  # the Free plan: no /indices, data from two years ago up to 12 weeks ago
    plan_endpoints={"/equities/master", "/equities/bars/daily", "/fins/summary", "/markets/calendar"},
    plan_from=date(2024, 8, 31), plan_to=date(2026, 8, 31),
)


def test_validate_credentials_tells_which_dataset_the_plan_does_not_cover():
    with running_fake(FakeConfig(api_key=KEY, **FREE_LIKE)) as (url, state):
        client = make_client(url)
        client.validate_credentials()  # the default cheap call works on every plan
        for dataset in ("listed_info", "daily_quotes", "fin_summary", "trading_calendar"):
            client.validate_credentials(dataset)  # covered, and no date outside the plan's window
        assert set(state.statuses) == {200} and state.count() == 5
        with pytest.raises(PlanNotCoveredError) as ei:
            client.validate_credentials("index_quotes")
        assert state.count() == 6 and state.statuses[-1] == 403  # one request, not retried
        msg = str(ei.value)
        assert "does not cover dataset index_quotes" in msg and "/indices/bars/daily" in msg
        assert ei.value.status_code == 403 and "subscription plan" in ei.value.server_message
        assert KEY not in msg
        # a bad key is a bad key, even for a dataset the plan would not cover
        with pytest.raises(AuthError):
            make_client(url, key="wrong-key-0000").validate_credentials("index_quotes")


def test_validate_credentials_for_a_dataset_network_down_and_unknown_name(server):
    sleep = Recorder()
    with pytest.raises(RetryableSourceError) as ei:
        make_client(closed_port_url(), sleep=sleep).validate_credentials("index_quotes")
    assert not isinstance(ei.value, (AuthError, PlanNotCoveredError)) and "connection refused" in str(ei.value)
    url, state = server
    with pytest.raises(ValueError, match="unknown J-Quants dataset 'corporate_actions'"):
        make_client(url).validate_credentials("corporate_actions")
    assert state.count() == 0


def test_source_validate_credentials_passes_the_dataset():
    from moomarkets.errors import ConfigError
    from moomarkets.sources.base import Credentials
    from moomarkets.sources.jquants import JQuantsSource

    with running_fake(FakeConfig(api_key=KEY, **FREE_LIKE)) as (url, state):
        src = JQuantsSource("jquants", {}, Credentials(secret=KEY, host=url))
        src.validate_credentials()
        src.validate_credentials("daily_quotes")
        with pytest.raises(PlanNotCoveredError, match="index_quotes"):
            src.validate_credentials("index_quotes")
        with pytest.raises(ConfigError):
            src.validate_credentials("nonsense")
        assert [p for p, _ in state.requests] == ["/equities/master", "/equities/bars/daily", "/indices/bars/daily"]


def test_every_source_accepts_a_dataset_in_validate_credentials():
    import inspect

    from moomarkets.sources.registry import get_source_class, source_kinds

    for kind in source_kinds():
        param = inspect.signature(get_source_class(kind).validate_credentials).parameters.get("dataset")
        assert param is not None and param.default is None, kind


def test_backoff_is_full_jitter_capped():
    client = JQuantsClient(KEY, backoff_base=2.0, backoff_max=10.0)
    for attempt in range(1, 10):
        cap = min(10.0, 2.0 * 2 ** (attempt - 1))
        delays = [client._backoff(attempt) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 4  # not constant zero
