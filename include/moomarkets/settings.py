"""Process-level settings, read from the environment (no Airflow imports).

``MOOMARKETS_DATABASE_URL``  the warehouse (config tables, market data, run records).
``MOOMARKETS_SNAPSHOT_PATH`` where the DAG factory keeps its last-known-good config snapshot.
``MOOMARKETS_CONFIG_TIMEOUT`` seconds allowed to read the config at DAG parse time.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329/moomarkets"


def database_url() -> str:
    return os.environ.get("MOOMARKETS_DATABASE_URL", DEFAULT_DATABASE_URL)


def snapshot_path() -> Path:
    explicit = os.environ.get("MOOMARKETS_SNAPSHOT_PATH")
    if explicit:
        return Path(explicit)
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return Path(home) / "moomarkets" / "config_snapshot.json"


def config_timeout() -> float:
    return float(os.environ.get("MOOMARKETS_CONFIG_TIMEOUT", "3"))
