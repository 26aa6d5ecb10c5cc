"""MooMarkets Ingest: market data job groups in Postgres, run as Airflow 3 DAGs.

Domain modules (config, sources, datasets, storage, ratelimit) import no Airflow; the Airflow-facing
layer is ``moomarkets.airflow`` (DAG factory, tasks, hook, pools).
"""

__version__ = "0.1.0"
