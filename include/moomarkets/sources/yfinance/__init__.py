"""Yahoo Finance through yfinance: ``daily_quotes`` and ``corporate_actions`` for ticker lists.

``source`` holds :class:`~moomarkets.sources.yfinance.source.YFinanceSource`, ``session`` the
controlled HTTP session (timeouts, shared rate limit, 429 detection), ``replay`` the offline
transport tests use. Nothing here imports yfinance or pandas until a fetch runs.
"""
