"""Check a data source's credentials with one real request (no Airflow imports).

Shared by the management UI's credential column and the connection form's **Test** button: the
request goes through the source's shared rate limit like every task request (a check never causes a
429 for the running tasks), and the outcome tells a rejected key, a plan that does not cover the
data, a busy limit and an unreachable API apart. The key never appears in ``detail``.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, NamedTuple

from moomarkets.errors import AuthError, PlanNotCoveredError, RateLimitTimeout, scrub
from moomarkets.sources.base import Credentials
from moomarkets.sources.registry import get_source_class

LIMITER_TIMEOUT = 8.0  # seconds a check waits for a token before saying the limit is busy


class CheckOutcome(NamedTuple):
    ok: bool | None  # True valid; False rejected or not covered; None undecided
    reason: str  # valid | rejected | not_covered | busy | no_limiter | unreachable
    detail: str = ""  # the error's text, scrubbed of the key


def check_source_credentials(
    kind: str, code: str, config: dict[str, Any], creds: Credentials, *, db_url: str | None
) -> CheckOutcome:
    """One cheap request through ``validate_credentials``; with ``db_url`` it first takes a token
    from the source ``code``'s shared limit (without, e.g. for a connection no source uses, none)."""
    def clean(text: str) -> str:
        return scrub(text, creds.secret)

    cls = get_source_class(kind)
    with ExitStack() as stack:
        limits: dict[str, Any] = {}
        if db_url is not None:
            from moomarkets.ratelimit import SourceRateLimiter

            try:
                limiter = stack.enter_context(
                    SourceRateLimiter(code, cls.rate_limit(config), db_url, timeout=LIMITER_TIMEOUT)
                )
            except Exception as exc:  # noqa: BLE001 - warehouse down: do not spend the key's allowance blind
                return CheckOutcome(None, "no_limiter", type(exc).__name__)
            limits = {"acquire": limiter.acquire, "on_throttle": limiter.penalize}
        try:
            cls(code, config, creds, **limits).validate_credentials()
        except RateLimitTimeout:
            return CheckOutcome(None, "busy")
        except AuthError as exc:
            return CheckOutcome(False, "rejected", clean(str(exc)))
        except PlanNotCoveredError as exc:
            return CheckOutcome(False, "not_covered", clean(str(exc)))
        except Exception as exc:  # noqa: BLE001 - network trouble: undecided, not "bad key"
            return CheckOutcome(None, "unreachable", clean(f"{type(exc).__name__}: {exc}")[:300])
    return CheckOutcome(True, "valid")
