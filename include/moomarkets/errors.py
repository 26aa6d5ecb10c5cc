"""The project's exception hierarchy.

Every error a user can cause or meet carries a one-line, specific message; callers (CLI, DAG
factory, tasks) decide how to show it. ``retryable`` tells the task layer whether Airflow should
retry a failed fetch unit or fail it at once.
"""

from __future__ import annotations


class MooMarketsError(Exception):
    """Base class of every error raised on purpose by this package."""


class ConfigError(MooMarketsError):
    """A data source or job group definition is invalid."""

    def __init__(self, message: str, *, field: str | None = None, subject: str | None = None):
        self.field = field
        self.subject = subject
        prefix = f"{subject}: " if subject else ""
        where = f"{field}: " if field else ""
        super().__init__(f"{prefix}{where}{message}")
        self.reason = message


class NotFoundError(ConfigError):
    """A named data source or job group does not exist."""


class ConfigStoreUnavailable(MooMarketsError):
    """The config database could not be read (and no snapshot could stand in)."""


class WarehouseConnectionError(ConfigStoreUnavailable):
    """The warehouse's Airflow Connection is missing, not a usable postgres connection, or could not
    be read in time; the message names the connection id, never its password."""


class SourceError(MooMarketsError):
    """A data source API call failed. ``retryable`` says whether trying again can help.

    ``status_code`` and ``server_message`` keep the HTTP status and the API's own message, when
    there was one, so callers can tell a 403 "plan" from a 403 "bad key" without parsing text.
    """

    retryable = True

    def __init__(self, message: str, *, status_code: int | None = None, server_message: str = ""):
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class RetryableSourceError(SourceError):
    """Transient: 429 after our own backoff ran out, 5xx, timeouts, garbage bodies."""

    retryable = True


class PermanentSourceError(SourceError):
    """Trying again cannot help: bad parameters (400), no access (403), a broken pagination loop."""

    retryable = False


class AuthError(PermanentSourceError):
    """The credentials were rejected."""


class PlanNotCoveredError(PermanentSourceError):
    """The credentials are valid but the subscription plan does not cover this data."""


class RateLimitTimeout(RetryableSourceError):
    """No rate-limit token could be had within the caller's timeout."""


class UsageError(MooMarketsError):
    """A command or form was used wrongly (nothing to update, unreadable file, bad JSON argument)."""


class AirflowOpError(MooMarketsError):
    """An Airflow action was refused (DAG not parsed yet, no runs in range, a backfill already running)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none.

    Driver errors (psycopg, SQLAlchemy) carry multi-line details; users get one line.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an error, short enough for one line of output."""
    text = first_line(exc)[:200]
    name = type(exc).__name__
    return name if text == name else f"{name}: {text}"


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret replaced by ``***`` (before it is stored, logged or shown)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
