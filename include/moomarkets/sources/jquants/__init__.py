"""J-Quants API v2: HTTP client (``client``), source (``source``) and a local fake server (``fake``)."""
