"""`pollers.probes`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from telemetry_gateway.gateway.config_base import Model, Seconds


class ProbeTarget(Model):
    kind: Literal["http", "tcp"]
    # http: a URL; tcp: host:port.
    target: str = Field(min_length=1)
    module: str = ""
    # HTTP statuses that count as success (default: 2xx and 3xx).
    expect_status: list[int] = []
    labels: dict[str, str] = {}


class ProbesConfig(Model):
    """The built-in synthetic prober (no exporter needed)."""

    interval: Seconds = 30.0
    timeout: Seconds = 10.0
    targets: list[ProbeTarget] = []
