"""Prometheus data model adapters: remote write and the exposition formats."""
