"""`receivers.jsonlines`."""

from __future__ import annotations

from telemetry_gateway.gateway.config_base import Model


class JsonlinesConfig(Model):
    """JSON lines logs on the HTTP listener (POST /v1/logs/jsonl)."""

    enabled: bool = True
