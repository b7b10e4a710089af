"""Benchmarks of dashsel (placeholder on the engine branch: keep main's version on merge)."""
