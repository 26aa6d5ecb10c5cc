"""HTTP client for the J-Quants API v2 (no Airflow, no pandas).

What it follows, page by page (jpx-jquants.com):

- /en/spec and /en/spec/migration-v1-v2: base URL ``https://api.jquants.com/v2``, the API key in
  the ``x-api-key`` header on every request, ``Accept-Encoding: gzip``.
- /en/spec (paging): the envelope ``{"data": [...], "pagination_key": "..."}``. The key is absent
  on the last page and changes on every page; it is sent back together with the *same* query.
  :meth:`JQuantsClient.iter_pages` follows it to the end and stops a server that loops (same key
  twice, or more than ``max_pages`` pages) with :class:`PermanentSourceError`.
- /en/spec/response-status:

  ===========  ===============================================================================
  200          success (a body without a ``data`` list, or not JSON, is *malformed*: retried)
  210          partial / no content: treated as a page, ``[]`` when there is no ``data``
  400          bad parameters: :class:`PermanentSourceError` carrying the server's ``message``
  403          not retried: :class:`AuthError` when the message says the key is invalid or
               expired, a plain :class:`PermanentSourceError` for a wrong resource path
               ("Missing Authentication Token"), else :class:`PlanNotCoveredError` (the plan
               does not cover this API or these dates)
  429          rate limited. The real API sends **no** ``Retry-After``, so we back off on our own
               clock: exponential backoff with full jitter, ``on_throttle(delay)`` is called so
               the caller can slow the whole source, and after ``max_attempts`` attempts
               :class:`RetryableSourceError` ("... rate limited ...")
  500/5xx      retried, then :class:`RetryableSourceError`
  ===========  ===============================================================================

  Timeouts and connection errors are retried like 5xx. v2 has no 401/404; if a proxy answers
  one we fail at once (401 as :class:`AuthError`).

The API key never appears in an exception message, a log line or ``repr()``: messages name the
base URL, the path and the query parameters only, and any server text is passed through
:func:`moomarkets.errors.scrub` before use. Base URL, paths and limits live in ``settings``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Iterator

import requests

from moomarkets.errors import (
    AuthError,
    PermanentSourceError,
    PlanNotCoveredError,
    RetryableSourceError,
    SourceError,
    scrub,
)
from moomarkets.sources.base import RequestCounters
from moomarkets.sources.jquants.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_VALIDATE_DATASET,
    MAX_PAGES,
    RETRY_STATUSES,
    VALIDATE_CALLS,
)

log = logging.getLogger(__name__)

_KIND_LABEL = {"server": "server error", "malformed": "malformed response", "network": "network error"}


def _server_message(resp: requests.Response) -> str:
    """The ``message`` field of an error body, else a short slice of the body text."""
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    text = (resp.text or "").strip()
    return text[:200] if text else "(empty body)"


class JQuantsClient:
    """A small, careful J-Quants v2 client: paging, backoff, clear errors.

    ``acquire`` is called before *every* HTTP request (retries included), so a shared rate
    limiter sees each one. ``requests_made`` counts the HTTP requests attempted (retries and
    requests that then failed on the network included); ``counters`` (the source's, when given)
    counts them too, with the 429 and 5xx answers. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 2.0,
        backoff_max: float = 120.0,
        acquire: Callable[[], None] | None = None,
        on_throttle: Callable[[float], None] | None = None,
        max_pages: int = MAX_PAGES,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        counters: RequestCounters | None = None,
    ) -> None:
        self._api_key = api_key or ""
        # what scrub() hides: a 1-3 character "key" is no real key, and hiding it would mangle text
        self._secret = self._api_key if len(self._api_key) >= 4 else None
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_pages = max(1, int(max_pages))
        self._acquire = acquire
        self._on_throttle = on_throttle
        self._own_session = session is None
        self.session = session or requests.Session()
        self._sleep = sleep
        self._rng = random.Random()
        self.requests_made = 0
        self.counters = counters if counters is not None else RequestCounters()

    def __repr__(self) -> str:
        return f"JQuantsClient(base_url={self.base_url!r}, api_key={'***' if self._api_key else None})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> JQuantsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------------
    def iter_pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's ``data`` list, following ``pagination_key`` to the last page."""
        query = {k: v for k, v in (params or {}).items() if v is not None and k != "pagination_key"}
        seen: set[str] = set()
        pages = 0
        key: str | None = None
        while True:
            body = self._request(path, query if key is None else {**query, "pagination_key": key})
            pages += 1
            yield body["data"]
            key = body.get("pagination_key") or None
            if key is None:
                return
            if key in seen:
                raise PermanentSourceError(
                    f"J-Quants pagination loop on {self._describe(path, query)}: the server sent the same "
                    f"pagination_key twice (after {pages} pages); stopping instead of looping forever"
                )
            if pages >= self.max_pages:
                raise PermanentSourceError(
                    f"J-Quants pagination on {self._describe(path, query)} did not end after {pages} pages "
                    f"(max_pages={self.max_pages}); stopping"
                )
            seen.add(key)

    def get_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of every page."""
        rows: list[dict[str, Any]] = []
        for page in self.iter_pages(path, params):
            rows.extend(page)
        return rows

    def validate_credentials(self, dataset: str | None = None) -> None:
        """One cheap call: without ``dataset`` ``/equities/master?code=72030`` (one row, available
        on every plan); with a dataset name (a key of :data:`VALIDATE_CALLS`) one request to that
        dataset's endpoint, which proves the plan covers it.

        Raises :class:`AuthError` (no key, or the key is invalid/expired),
        :class:`PlanNotCoveredError` (the key works but the plan does not cover the call),
        :class:`RetryableSourceError` (network down, server errors, rate limited: try later),
        ``ValueError`` for an unknown dataset name (nothing is sent).
        Network trouble is retried once only, so a wrong host answers quickly.
        """
        if dataset is None:
            path, params = VALIDATE_CALLS[DEFAULT_VALIDATE_DATASET]
        elif dataset in VALIDATE_CALLS:
            path, params = VALIDATE_CALLS[dataset]
        else:
            raise ValueError(f"unknown J-Quants dataset {dataset!r} (known: {', '.join(VALIDATE_CALLS)})")
        if not self._api_key:
            raise AuthError("no J-Quants API key configured (the connection's password is empty)")
        try:
            self._request(path, dict(params), attempts=min(2, self.max_attempts))
        except PlanNotCoveredError as exc:
            if dataset is None:
                raise
            raise PlanNotCoveredError(
                f"J-Quants: the key is valid but the plan does not cover dataset {dataset} ({path}): {exc}",
                status_code=exc.status_code,
                server_message=exc.server_message,
            ) from None
        log.info("J-Quants API key accepted by %s%s", self.base_url, f" for {dataset} ({path})" if dataset else "")

    # -- internals ----------------------------------------------------------------------------
    def _describe(self, path: str, params: dict[str, Any]) -> str:
        shown = {k: v for k, v in params.items() if k != "pagination_key"}
        query = "&".join(f"{k}={v}" for k, v in shown.items())
        return scrub(f"{path}?{query}" if query else path, self._secret)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(max, base * 2**(attempt-1)))."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, cap)

    def get_object(self, path: str, params: dict[str, Any], field: str) -> dict[str, Any]:
        """One request whose 200 body is an object with a string ``field`` (e.g. /bulk/get's
        ``url``) instead of a ``data`` list; the same limiter, retries and errors."""
        return self._request(path, params, field=field)

    def _request(self, path: str, params: dict[str, Any], *, attempts: int | None = None,
                 field: str | None = None) -> dict[str, Any]:
        if not self._api_key:
            raise AuthError("no J-Quants API key configured (the connection's password is empty)")
        attempts = attempts or self.max_attempts
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        headers = {"x-api-key": self._api_key, "Accept-Encoding": "gzip", "Accept": "application/json",
                   "User-Agent": "moomarkets-ingest"}
        what = self._describe(path, params)
        kind, detail = "network", ""
        for attempt in range(1, attempts + 1):
            if self._acquire is not None:
                self._acquire()
            self.requests_made += 1
            self.counters.requests += 1
            log.debug("GET %s%s (attempt %d/%d)", self.base_url, what, attempt, attempts)
            try:
                resp = self.session.get(url, params=params, headers=headers, timeout=self.timeout)
            except requests.Timeout:
                kind, detail = "network", f"timed out after {self.timeout:g} s"
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                kind, detail = "malformed", f"body cut off or undecodable ({type(exc).__name__})"
            except requests.ConnectionError as exc:
                kind, detail = "network", self._connection_detail(exc)
            except requests.RequestException as exc:
                kind, detail = "network", type(exc).__name__
            else:
                status = resp.status_code
                self.counters.answered(status)
                if status in (200, 210):
                    body, detail = self._parse(resp, field)
                    if body is not None:
                        return body
                    kind = "malformed"
                elif status == 429:
                    kind, detail = "rate_limited", "HTTP 429"
                elif status in RETRY_STATUSES or status >= 500:
                    kind, detail = "server", f"HTTP {status}: {scrub(_server_message(resp), self._secret)[:200]}"
                else:
                    raise self._permanent(resp, what)
            if attempt >= attempts:
                break
            delay = self._backoff(attempt)
            if kind == "rate_limited":
                if self._on_throttle is not None:
                    self._on_throttle(delay)
                log.warning("J-Quants rate limited (429) on %s; backing off %.2f s (attempt %d/%d)",
                            what, delay, attempt, attempts)
            else:
                log.warning("J-Quants %s on %s: %s; retrying in %.2f s (attempt %d/%d)",
                            _KIND_LABEL.get(kind, kind), what, detail, delay, attempt, attempts)
            self._sleep(delay)
        raise self._exhausted(kind, detail, what, attempts)

    def _connection_detail(self, exc: Exception) -> str:
        text = str(exc).lower()
        if "refused" in text:
            reason = "connection refused"
        elif "name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
            reason = "host name not found"
        elif "reset" in text or "aborted" in text:
            reason = "connection reset"
        else:
            reason = type(exc).__name__
        return reason

    def _parse(self, resp: requests.Response, field: str | None = None) -> tuple[dict[str, Any] | None, str]:
        ctype = resp.headers.get("Content-Type", "")
        try:
            body = resp.json()
        except ValueError:
            head = (resp.text or "")[:60].replace("\n", " ")
            return None, scrub(f"not JSON (HTTP {resp.status_code}, {ctype or 'no content type'}, "
                               f"{len(resp.content)} bytes, starts {head!r})", self._secret)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return body, ""
        if field is not None:
            if isinstance(body, dict) and isinstance(body.get(field), str):
                return body, ""
            keys = sorted(body)[:5] if isinstance(body, dict) else type(body).__name__
            return None, scrub(f"JSON without a '{field}' string (got {keys})", self._secret)
        if resp.status_code == 210 and isinstance(body, dict):
            log.info("J-Quants answered 210 (no content/partial): %s",
                     scrub(str(body.get("message", "")), self._secret))
            return {"data": []}, ""
        keys = sorted(body)[:5] if isinstance(body, dict) else type(body).__name__
        return None, scrub(f"JSON without a 'data' list (got {keys})", self._secret)

    def _permanent(self, resp: requests.Response, what: str) -> SourceError:
        status = resp.status_code
        message = scrub(_server_message(resp), self._secret)
        low = message.lower()
        cls: type[SourceError]
        if status == 400 and "subscription" in low and "cover" in low:
            cls, text = PlanNotCoveredError, f"J-Quants: your plan does not cover {what} (HTTP 400): {message}"
        elif status == 400:
            cls, text = PermanentSourceError, f"J-Quants rejected {what} (HTTP 400 bad request): {message}"
        elif status == 403 and ("api key" in low or "apikey" in low) and ("invalid" in low or "expired" in low):
            cls, text = AuthError, (
                f"J-Quants rejected the API key (HTTP 403: {message}); check the connection's password "
                f"(a v2 API key from the J-Quants dashboard)"
            )
        elif status == 403 and "missing authentication token" in low:
            cls, text = PermanentSourceError, (
                f"J-Quants answered 403 '{message}' for {what}: that resource path does not exist at "
                f"{self.base_url} (the base URL must end with /v2)"
            )
        elif status == 403:
            cls, text = PlanNotCoveredError, (
                f"J-Quants refused {what} (HTTP 403: {message}): the key is valid but the subscription plan "
                f"does not cover this API or these dates"
            )
        elif status == 404:
            cls, text = PermanentSourceError, (
                f"HTTP 404 for {what} at {self.base_url}: no such resource (J-Quants v2 never answers 404; "
                f"check the base URL, it must end with /v2): {message}"
            )
        elif status == 401:
            cls, text = AuthError, f"J-Quants (or a proxy) rejected the credentials for {what} (HTTP 401: {message})"
        else:
            cls, text = PermanentSourceError, f"J-Quants answered HTTP {status} for {what}: {message}"
        return cls(text, status_code=status, server_message=message)

    def _exhausted(self, kind: str, detail: str, what: str, attempts: int) -> RetryableSourceError:
        if kind == "rate_limited":
            msg = (f"J-Quants rate limited (HTTP 429) on {what}; still limited after {attempts} attempts with "
                   f"backoff: the plan's requests-per-minute limit is exceeded, slow down or try later")
        elif kind == "server":
            msg = f"J-Quants server error on {what} after {attempts} attempts ({detail}); try again later"
        elif kind == "malformed":
            msg = f"malformed response from J-Quants on {what} after {attempts} attempts: {detail}"
        else:
            msg = f"cannot reach J-Quants at {self.base_url} ({what}): {detail} after {attempts} attempts"
        return RetryableSourceError(scrub(msg, self._secret))
