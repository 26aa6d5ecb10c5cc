"""Yahoo Finance through yfinance: ``daily_quotes`` and ``corporate_actions`` for ticker lists.

``source`` holds :class:`YFinanceSource` (validate, plan, fetch); ``settings`` the constants,
``markets`` exchanges and their sessions, ``frames`` the pandas helpers, ``completeness`` the rules
for missing bars, ``session`` the controlled HTTP session (timeouts, shared rate limit, 429
detection, the Connection host as base URL). Nothing here imports yfinance or pandas until a fetch
runs.
"""

from __future__ import annotations

from moomarkets.sources.yfinance.source import YFinanceSource

__all__ = ["YFinanceSource"]
