# Production-style image: the official Airflow 3.3.2 image plus this package and its pins.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml /opt/moomarkets/
COPY --chown=airflow:root include /opt/moomarkets/include
RUN pip install --no-cache-dir -r /opt/moomarkets/requirements.txt -c /opt/moomarkets/constraints.txt \
 && pip install --no-cache-dir --no-deps -e /opt/moomarkets
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
