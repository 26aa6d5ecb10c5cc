"""J-Quants API v2 (dlt verified-source layout): ``settings`` (constants from the spec),
``client`` (HTTP, paging, backoff) and ``source`` (:class:`JQuantsSource`: validate, plan, fetch).

The local fake server tests use lives in ``moomarkets.testing.jquants_fake``, never imported here.
"""

from __future__ import annotations

from moomarkets.sources.jquants.source import JQuantsSource

__all__ = ["JQuantsSource"]
