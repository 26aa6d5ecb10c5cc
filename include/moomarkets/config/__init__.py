"""Config: the data source and job group records and their validation (no database, no Airflow).

Reading and writing the config tables lives in ``moomarkets.warehouse.config_store``; the
parse-time read with its last-known-good snapshot in ``moomarkets.warehouse.config_snapshot``.
"""

from moomarkets.config.models import DataSource, GroupSpec, JobGroup

__all__ = ["DataSource", "GroupSpec", "JobGroup"]
