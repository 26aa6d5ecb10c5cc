"""Examples for data engineers: the example config (``example.yaml``) and the code of the example
user DAG ``dags/example_market_breadth.py`` (``market_breadth``), which hangs its own analysis on
a group's asset. Plain Python over the warehouse: no Airflow here, as in the domain packages."""
