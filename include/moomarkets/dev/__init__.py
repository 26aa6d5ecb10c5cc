"""The local stack behind ``make run`` / ``make stop``: embedded PostgreSQL, Airflow components and
the fake J-Quants server on one machine. Not part of the deployed product."""
