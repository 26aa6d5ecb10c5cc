"""Registers the job groups' timetable with Airflow (the scheduler, DAG processor and API server
deserialize every group DAG with it). Kept apart from the UI plugin: if the management app ever
failed to import, scheduling must go on."""

from airflow.plugins_manager import AirflowPlugin

from moomarkets.airflow.timetables import TradingDayTimetable


class MooMarketsTimetablesPlugin(AirflowPlugin):
    name = "moomarkets_timetables"
    timetables = [TradingDayTimetable]
