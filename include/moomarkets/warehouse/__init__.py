"""The warehouse Postgres: connections, migrations, dataset tables, loads, run records, config
tables and the read queries the UI and CLI use (psycopg 3, no Airflow)."""
