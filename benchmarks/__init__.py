"""Benchmarks of geoloom: each case a ratio measured side by side in one run (``python -m benchmarks``)."""
