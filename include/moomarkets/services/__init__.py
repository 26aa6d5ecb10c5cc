"""The service layer: every change the CLI and the management UI make, and the rows they show.

- ``sources``, ``groups``: create, update, enable/disable, remove; validated and written in one
  transaction, then Airflow is kept in step (best effort, see ``effects``).
- ``config_io``: YAML export and all-or-nothing import.
- ``runs``: manual runs and backfills, with the backfill limits.
- ``views``: rows for listings and pages (warehouse reads plus what Airflow knows).
- ``inputs``: user input to values, worded once for the CLI and the pages.

Writes take a warehouse connection that is not inside a transaction, and commit their own: a
savepoint inside a caller's open transaction would leave the change uncommitted while Airflow
was already told about it.
"""
