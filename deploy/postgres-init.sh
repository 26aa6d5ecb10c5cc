#!/bin/bash
# Runs once, on the first start of the postgres container: one role and database each for the
# Airflow metadata and the MooMarkets warehouse, each with its own password from .env.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE moomarkets LOGIN PASSWORD '${MOOMARKETS_DB_PASSWORD}';
CREATE DATABASE moomarkets OWNER moomarkets;
SQL
