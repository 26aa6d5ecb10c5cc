"""Lateness alerts for every job group (thin loader: see include/moomarkets/airflow/watchdog.py)."""

from moomarkets.airflow.watchdog import build_watchdog_dag

dag = build_watchdog_dag()
