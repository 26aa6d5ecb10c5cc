"""MooMarkets management pages in Airflow's UI (thin: the app lives in ``moomarkets.ui``).

``fastapi_apps`` mounts the app at /moomarkets in the api-server; ``external_views`` puts it in
Airflow's navigation (shown in an iframe at /plugin/moomarkets). The app checks Airflow's login
itself on every route: a mounted app is not behind Airflow's auth by default. The job groups'
timetable is registered by its own small plugin (``moomarkets_timetables.py``), so scheduling never
depends on this app importing.
"""

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from moomarkets.airflow import warehouse
from moomarkets.ui import URL_PREFIX, create_app

warehouse.install()  # the pages' warehouse: the moomarkets_warehouse Connection (unless $MOOMARKETS_DATABASE_URL)

ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
    "stroke='%23808080' stroke-width='2'><path d='M3 17l5-5 4 4 8-8'/><path d='M14 8h6v6'/></svg>"
)


# the navigation link must carry [api] base_url's path when Airflow is served under a prefix
_BASE_PATH = urlsplit(conf.get("api", "base_url", fallback="") or "/").path.rstrip("/")


class MooMarketsPlugin(AirflowPlugin):
    name = "moomarkets"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "MooMarkets management"}]
    external_views = [
        {
            "name": "MooMarkets",
            "href": f"{_BASE_PATH}{URL_PREFIX}/groups",
            "url_route": "moomarkets",
            "destination": "nav",
            "nav_top_level": True,
            "icon": ICON,
        }
    ]
