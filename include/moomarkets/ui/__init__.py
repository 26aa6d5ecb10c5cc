"""The MooMarkets management UI: a FastAPI app mounted in Airflow's api-server by ``plugins/moomarkets_plugin.py``.

Pages for data sources, job groups and coverage, and the small JSON API they use. Every route
requires an Airflow login (see ``moomarkets.ui.auth``).
"""

from moomarkets.ui.app import URL_PREFIX, create_app

__all__ = ["URL_PREFIX", "create_app"]
