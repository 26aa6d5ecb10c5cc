"""Test doubles at the network edge: a local J-Quants v2 server and a Yahoo replay server.

Imported by tests, benchmarks and the local dev stack only; production code never imports them
(an import-linter contract checks it)."""
