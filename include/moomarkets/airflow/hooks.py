"""Airflow hooks for the source connection types (the thin Airflow side of ``moomarkets.sources``).

``test_connection`` backs the **Test** button in Airflow's connection form: one cheap call through
the source's ``validate_credentials``, with a message that tells a bad key, a plan that does not
cover the data and a network problem apart. Messages never contain the key.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from moomarkets.airflow.connections import credentials_from_connection, describe_check
from moomarkets.sources.base import Credentials
from moomarkets.sources.jquants import JQuantsSource
from moomarkets.sources.yfinance import YFinanceSource


class _SourceHook(BaseHook):
    conn_name_attr = "conn_id"
    source_kind: str

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    def credentials(self) -> Credentials:
        return credentials_from_connection(self.get_connection(self.conn_id))

    def _configured_source(self):
        """The ``data_sources`` row using this connection (its code names the shared limiter and
        its config the rate), or None when there is none or the warehouse cannot be read."""
        from moomarkets import settings
        from moomarkets.airflow.warehouse import install
        from moomarkets.warehouse import config_store as store
        from moomarkets.warehouse.db import connect

        install()  # the warehouse Connection, wherever the Test button runs
        try:
            with connect(settings.database_url(timeout=3), connect_timeout=3, statement_timeout_ms=3000) as conn:
                rows = [s for s in store.list_sources(conn) if s.conn_id == self.conn_id and s.kind == self.source_kind]
        except Exception as exc:  # noqa: BLE001 - the Test button still works without the warehouse
            self.log.info("MooMarkets warehouse not readable (%s): testing without the shared rate limit",
                          type(exc).__name__)
            return None
        return rows[0] if rows else None

    def test_connection(self) -> tuple[bool, str]:
        """One cheap request; when a data source uses this connection, it waits its turn in that
        source's shared rate limit like every task request (a Test click never causes a 429)."""
        from moomarkets import settings
        from moomarkets.pipeline.credentials import check_source_credentials

        src = self._configured_source()
        if src is None:
            outcome = check_source_credentials(
                self.source_kind, self.source_kind, {}, self.credentials(), db_url=None
            )
        else:
            outcome = check_source_credentials(
                src.kind, src.code, src.config, self.credentials(), db_url=settings.database_url()
            )
        message = describe_check(outcome, source_code=src.code if src else None)
        if outcome.ok:
            return True, f"{self.hook_name}: {message}"
        return False, message[:1].upper() + message[1:]


class JQuantsHook(_SourceHook):
    """J-Quants API v2: the API key is the connection's password; host optionally replaces the base URL."""

    conn_name_attr = "jquants_conn_id"
    default_conn_name = JQuantsSource.default_conn_id
    conn_type = "jquants"
    hook_name = "J-Quants API v2"
    source_kind = "jquants"

    def __init__(self, jquants_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id=jquants_conn_id, **kwargs)


class YahooFinanceHook(_SourceHook):
    """Yahoo Finance has no key; the connection only carries an optional base URL."""

    conn_name_attr = "yfinance_conn_id"
    default_conn_name = YFinanceSource.default_conn_id
    conn_type = "yfinance"
    hook_name = "Yahoo Finance (yfinance)"
    source_kind = "yfinance"

    def __init__(self, yfinance_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id=yfinance_conn_id, **kwargs)
