"""`receivers.remote_write`."""

from __future__ import annotations

from telemetry_gateway.gateway.config_base import Model


class RemoteWriteConfig(Model):
    """Prometheus remote write 1.0 on the HTTP listener (POST /api/v1/write)."""

    enabled: bool = True
