"""`receivers.zipkin`."""

from __future__ import annotations

from telemetry_gateway.gateway.config_base import Model


class ZipkinConfig(Model):
    """Zipkin v2 JSON spans on the HTTP listener (POST /api/v2/spans)."""

    enabled: bool = True
