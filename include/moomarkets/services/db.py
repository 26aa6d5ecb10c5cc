"""Write transactions of the service layer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.pq import TransactionStatus


@contextmanager
def committed(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """One transaction that is committed when the block ends (rolled back if it raises).

    Refuses a connection already inside a transaction: psycopg would turn the block into a
    savepoint, and the change would stay uncommitted while Airflow was already told about it.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("a service write needs a connection outside a transaction (commit or roll back first)")
    with conn.transaction():
        yield conn
