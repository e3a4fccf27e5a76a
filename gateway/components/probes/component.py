"""The built-in synthetic prober (HTTP and TCP, with phase timings)."""

from __future__ import annotations

from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.probes.config import ProbesConfig
from telemetry_gateway.gateway.components.samples import adapt_samples
from telemetry_gateway.schema import POINTS

FORMAT = Format("probes", "metrics", "probe", "probe result", "samples", POINTS, lambda samples: samples, adapt_samples)


def service(config: ProbesConfig, pipeline, metrics, http_routes: list, location: str = ""):
    from telemetry_gateway.gateway.components.probes.prober import Prober

    return [Prober(config, location, pipeline)]


COMPONENT = Component("probes", "pollers", ProbesConfig, (FORMAT,), service=service)
