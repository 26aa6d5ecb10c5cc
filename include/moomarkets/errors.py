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


class SourceError(MooMarketsError):
    """A data source API call failed. ``retryable`` says whether trying again can help."""

    retryable = True


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
