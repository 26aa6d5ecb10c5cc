"""Airflow provider metadata (entry point ``apache_airflow_provider``).

Registering the package as a provider gives the J-Quants connection its own type in Airflow's
connection form (labelled fields, hidden irrelevant ones) and a working **Test** button, which
calls ``JQuantsHook.test_connection`` -> ``validate_credentials``. Declarative ``conn-fields`` /
``ui-field-behaviour`` is the Airflow 3 way (hook methods for widgets are deprecated).
"""

from __future__ import annotations

from moomarkets import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "moomarkets-ingest",
        "name": "MooMarkets Ingest",
        "description": "Market data sources (J-Quants API v2, Yahoo Finance) for the MooMarkets warehouse.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "moomarkets.airflow.hooks.JQuantsHook",
                "hook-name": "J-Quants API v2",
                "connection-type": "jquants",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "Base URL (optional)", "password": "API key"},
                    "placeholders": {
                        "host": "leave empty for https://api.jquants.com/v2 (set to use a proxy or a local fake)",
                        "password": "API key from the J-Quants dashboard (v2; never stored in MooMarkets tables)",
                    },
                },
            },
            {
                "hook-class-name": "moomarkets.airflow.hooks.YahooFinanceHook",
                "hook-name": "Yahoo Finance (yfinance)",
                "connection-type": "yfinance",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "password", "extra"],
                    "relabeling": {"host": "Base URL (optional)"},
                    "placeholders": {"host": "leave empty for Yahoo's own endpoints"},
                },
            },
        ],
    }
