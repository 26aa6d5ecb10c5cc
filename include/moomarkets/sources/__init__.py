"""Data sources: one class per API, registered by kind in ``moomarkets.sources.registry``."""
