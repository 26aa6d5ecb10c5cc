"""A job group resolved once into the ready parts every task of its run uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from moomarkets.config.models import DataSource, GroupSpec, JobGroup
from moomarkets.config.validate import validate_group
from moomarkets.sources.base import Credentials, Interval, Source
from moomarkets.sources.registry import get_source_class
from moomarkets.warehouse.datasets import Dataset, get_dataset

if TYPE_CHECKING:
    from moomarkets.ratelimit import SourceRateLimiter


@dataclass(frozen=True)
class GroupPipeline:
    """A validated job group with its source class, dataset and rate limit looked up once.

    Built at DAG parse time by the factory (``resolve``) and closed over by the tasks, so planning,
    fetching and recording never look the source up again. Holds no secret: credentials are
    read from the Airflow Connection when a task runs and passed to :meth:`source`.
    """

    group: JobGroup
    source_row: DataSource
    source_class: type[Source]
    dataset: Dataset
    rates: tuple[str, ...]

    @classmethod
    def resolve(cls, spec: GroupSpec) -> GroupPipeline:
        """Validate the group against its source; raises ConfigError naming what is wrong."""
        group = validate_group(spec.group, spec.source)
        source_row = spec.source
        assert source_row is not None  # validate_group refuses a group without its source
        source_class = get_source_class(source_row.kind)
        return cls(
            group=group,
            source_row=source_row,
            source_class=source_class,
            dataset=get_dataset(group.dataset),
            rates=tuple(source_class.rate_limit(source_row.config)),
        )

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def source_code(self) -> str:
        return self.source_row.code

    @property
    def spec(self) -> GroupSpec:
        return GroupSpec(group=self.group, source=self.source_row)

    def covered_days(self, interval: Interval) -> tuple[date, date] | None:
        """(first, last) day a run over ``interval`` loads (``Source.covered_days``)."""
        return self.source_class.covered_days(self.group.dataset, self.group.parameters, interval)

    def source(self, credentials: Credentials | None = None, limiter: SourceRateLimiter | None = None) -> Source:
        """A source instance; with ``limiter`` every request waits on the shared rate limit."""
        limits: dict[str, Any] = {}
        if limiter is not None:
            limits = {"acquire": limiter.acquire, "on_throttle": limiter.penalize}
        return self.source_class(self.source_row.code, self.source_row.config, credentials or Credentials(), **limits)

    def limiter(self, url: str) -> SourceRateLimiter:
        """The source's shared (cross-worker) rate limiter; close it when done."""
        from moomarkets.ratelimit import SourceRateLimiter

        return SourceRateLimiter(self.source_row.code, list(self.rates), url)
