"""One DAG per MooMarkets job group, built from the job_groups table.

Thin loader: all logic lives in the `moomarkets` package (include/moomarkets/airflow/factory.py).
Manage groups with the `moomarkets` CLI or the MooMarkets pages in the Airflow UI.
"""

from moomarkets.airflow.factory import build_dags

build_dags(globals())
