"""The Airflow layer: DAG factory, Connection mapping, hooks and provider info, pools, and the
Airflow side effects (pause, trigger, backfill). The only package that imports Airflow, besides
``dags/``, ``plugins/`` and the UI's auth glue."""
