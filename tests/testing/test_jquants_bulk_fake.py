"""The fake's bulk files: /v2/bulk/list, /v2/bulk/get and the signed-URL downloads."""

from __future__ import annotations

import gzip
from datetime import date

import pytest
from fastapi.testclient import TestClient
from moomarkets.sources.jquants.bulk import parse_csv
from moomarkets.testing import jquants_data as fd
from moomarkets.testing.jquants_bulk import file_key
from moomarkets.testing.jquants_fake import FakeConfig, create_app

KEY = "fake-bulk-key"
H = {"x-api-key": KEY}
BARS = "/equities/bars/daily"


def client(**cfg) -> TestClient:
    return TestClient(create_app(FakeConfig(api_key=KEY, page_size=10_000, **cfg)))


def download(http: TestClient, key: str):
    url = http.get("/v2/bulk/get", params={"key": key}, headers=H).json()["url"]
    return http.get(url)  # no API key: a signed URL


def test_list_needs_endpoint_or_date_and_a_known_endpoint():
    with client() as http:
        assert http.get("/v2/bulk/list", headers=H).status_code == 400
        assert http.get("/v2/bulk/list", params={"endpoint": "/nope"}, headers=H).status_code == 400
        assert http.get("/v2/bulk/list", params={"endpoint": BARS}).status_code == 403  # no key
        # an endpoint the API accepts that this fake has no files for: an empty list
        assert http.get("/v2/bulk/list", params={"endpoint": "/fins/dividend"}, headers=H).json() == {"data": []}


def test_list_shape_and_monthly_files_within_from_to():
    with client() as http:
        r = http.get("/v2/bulk/list", params={"endpoint": BARS, "from": "20260210", "to": "2026-04-03"}, headers=H)
        assert r.status_code == 200
        files = r.json()["data"]
        assert [f["Key"] for f in files] == [file_key(BARS, date(2026, m, 1)) for m in (2, 3, 4)]
        assert files[1]["Key"] == "equities/bars/daily/2026/03/bars_daily_20260301.csv.gz"
        assert all(set(f) == {"Key", "Size", "LastModified"} and isinstance(f["Size"], int) for f in files)
        body = download(http, files[1]["Key"]).content
        assert files[1]["Size"] == len(body if body[:2] == b"\x1f\x8b" else gzip.compress(body))
        by_month = http.get("/v2/bulk/list", params={"date": "2026-03"}, headers=H).json()["data"]
        assert [f["Key"] for f in by_month] == [files[1]["Key"]]


def test_file_rows_equal_the_api_rows_every_field():
    with client() as http:
        rows = parse_csv(download(http, file_key(BARS, date(2026, 3, 1))).content, "daily_quotes")
        api = []
        for d in fd.trading_days(date(2026, 3, 1), date(2026, 3, 31)):
            api.extend(http.get("/v2" + BARS, params={"date": d.strftime("%Y%m%d")}, headers=H).json()["data"])
        assert len(rows) == len(api) > 0
        assert rows == api  # every field, with the API's value types (null, int, float, string)


def test_files_follow_today_and_the_plan_dates():
    with client(today=date(2026, 3, 18), plan_from=date(2026, 2, 10)) as http:
        files = http.get("/v2/bulk/list", params={"endpoint": BARS}, headers=H).json()["data"]
        assert files[0]["Key"].endswith("20260201.csv.gz") and files[-1]["Key"].endswith("20260301.csv.gz")
        rows = parse_csv(download(http, files[-1]["Key"]).content, "daily_quotes")
        assert max(r["Date"] for r in rows) == "2026-03-18"
        feb = parse_csv(download(http, files[0]["Key"]).content, "daily_quotes")
        assert min(r["Date"] for r in feb) == "2026-02-10"
        assert http.get("/v2/bulk/get", params={"key": file_key(BARS, date(2026, 4, 1))}, headers=H).status_code == 400


def test_plan_without_bulk_is_403():
    with client(bulk=False) as http:
        for path, params in (("/v2/bulk/list", {"endpoint": BARS}), ("/v2/bulk/get", {"key": "x"})):
            r = http.get(path, params=params, headers=H)
            assert r.status_code == 403 and "not available on your subscription plan" in r.json()["message"]
        assert http.get("/v2" + BARS, params={"date": "20260302"}, headers=H).status_code == 200


def test_get_parameters_and_signed_url():
    with client() as http:
        key = file_key(BARS, date(2026, 3, 1))
        assert http.get("/v2/bulk/get", params={"key": key, "endpoint": BARS, "date": "2026-03"},
                        headers=H).status_code == 400
        assert http.get("/v2/bulk/get", headers=H).status_code == 400
        by_date = http.get("/v2/bulk/get", params={"endpoint": BARS, "date": "202603"}, headers=H).json()["url"]
        assert http.get(by_date).status_code == 200
        app_state = http.app.state.fake
        before = app_state.count()
        r = download(http, key)
        assert r.status_code == 200 and app_state.count() == before + 1  # the download is not an API request
        assert app_state.bulk.downloads[-1] == (key, 200)


def test_expired_and_tampered_urls_answer_like_s3():
    with client() as http:
        key = file_key(BARS, date(2026, 3, 1))
        http.app.state.fake.bulk.expire_next(1)
        r = download(http, key)
        assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text and "expired" in r.text
        assert download(http, key).status_code == 200  # a fresh get works
        url = http.get("/v2/bulk/get", params={"key": key}, headers=H).json()["url"]
        r = http.get(url[:-3] + "abc")
        assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text


@pytest.mark.parametrize("ttl", [0.0])
def test_url_lifetime_is_the_configured_ttl(ttl):
    with client(bulk_url_ttl=ttl) as http:
        assert download(http, file_key(BARS, date(2026, 3, 1))).status_code == 403
