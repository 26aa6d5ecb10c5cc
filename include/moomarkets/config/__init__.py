"""Config: the data source and job group model, its validation, storage, snapshot and YAML I/O."""

from moomarkets.config.models import DataSource, GroupSpec, JobGroup

__all__ = ["DataSource", "GroupSpec", "JobGroup"]
