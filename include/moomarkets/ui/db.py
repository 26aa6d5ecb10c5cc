"""The warehouse connection of one UI request, shared by the pages and the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from moomarkets.errors import ConfigStoreUnavailable, first_line
from moomarkets.warehouse.db import connect

T = TypeVar("T")


class WarehouseUnavailable(ConfigStoreUnavailable):
    """The warehouse could not be reached; ``detail`` is the driver's first line."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, *args, **kwargs)`` on a fresh connection, closed afterwards.

    Autocommit: reads open no transaction, so each service write is its own committed transaction.
    Short connect and statement timeouts: a page must answer, not hang on a busy database.
    """
    try:
        conn = connect(connect_timeout=5, statement_timeout_ms=20000, autocommit=True, application_name="moomarkets-ui")
    except Exception as exc:  # noqa: BLE001 - any driver error means the same to the user
        raise WarehouseUnavailable(first_line(exc)) from None
    with conn:
        return fn(conn, *args, **kwargs)
