"""Receivers own transport only: framing, decompression, limits, status codes."""
