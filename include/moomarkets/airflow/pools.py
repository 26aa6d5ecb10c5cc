"""One Airflow pool per data source, sized from ``config.max_concurrency``.

Pool names are derived, never stored: ``moomarkets_<source code>``. The CLI keeps them in step
with ``data_sources`` (create, resize, describe); ``moomarkets pools check`` reports drift.
"""

from __future__ import annotations

from moomarkets.config.models import DataSource
from moomarkets.sources.registry import get_source_class


def pool_name(source_code: str) -> str:
    return f"moomarkets_{source_code}"


def pool_slots(src: DataSource) -> int:
    return get_source_class(src.kind).max_concurrency(src.config)


def pool_description(src: DataSource) -> str:
    rates = ", ".join(get_source_class(src.kind).rate_limit(src.config))
    return f"MooMarkets source {src.code} ({src.name}); rate limit {rates}; managed by `moomarkets`"


def sync_pools(sources: list[DataSource]) -> list[tuple[str, int, str]]:
    """Create or resize every source's pool in the Airflow metadata DB; returns (name, slots, action)."""
    from airflow.models.pool import Pool

    done = []
    for src in sources:
        name, slots = pool_name(src.code), pool_slots(src)
        existing = Pool.get_pool(name)
        if existing is not None and existing.slots == slots and existing.description == pool_description(src):
            done.append((name, slots, "unchanged"))
            continue
        Pool.create_or_update_pool(name, slots, pool_description(src), include_deferred=False)
        done.append((name, slots, "created" if existing is None else "updated"))
    return done


def check_pools(sources: list[DataSource]) -> list[str]:
    """Problems with the pools (missing or wrong size), one line each; empty when all is well."""
    from airflow.models.pool import Pool

    problems = []
    for src in sources:
        name, slots = pool_name(src.code), pool_slots(src)
        pool = Pool.get_pool(name)
        if pool is None:
            problems.append(f"pool {name} is missing (run `moomarkets pools sync`)")
        elif pool.slots != slots:
            problems.append(f"pool {name} has {pool.slots} slots, config says {slots}")
    return problems
