"""MooMarkets Ingest: market data job groups in Postgres, run as Airflow 3 DAGs.

Layers, top to bottom (each imports only those below it; checked by import-linter, see
pyproject.toml): ``cli`` and ``ui``; ``services``; ``airflow`` (the only layer that imports
Airflow, besides the UI's login glue ``ui.auth``); ``pipeline``; ``warehouse``; ``config``;
``sources``; ``ratelimit``; ``errors`` and ``settings``. ``testing`` (fakes) and ``dev`` (local
stack) are never imported by the others.
"""

__version__ = "0.1.0"
