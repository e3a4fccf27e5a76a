"""The registry: every way data arrives, one line each.

Adding a format is a folder here (config.py, component.py, its transport)
plus one line below; its config appears as `<section>.<name>`, and
tests/config checks the README documents it.
"""

from __future__ import annotations

from functools import partial

from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.jsonlines.component import COMPONENT as JSONLINES
from telemetry_gateway.gateway.components.otlp.component import COMPONENT as OTLP
from telemetry_gateway.gateway.components.probes.component import COMPONENT as PROBES
from telemetry_gateway.gateway.components.remote_write.component import COMPONENT as REMOTE_WRITE
from telemetry_gateway.gateway.components.scrape.component import COMPONENT as SCRAPE
from telemetry_gateway.gateway.components.syslog.component import COMPONENT as SYSLOG
from telemetry_gateway.gateway.components.zipkin.component import COMPONENT as ZIPKIN

COMPONENTS: tuple[Component, ...] = (
    OTLP,
    REMOTE_WRITE,
    ZIPKIN,
    JSONLINES,
    SYSLOG,
    SCRAPE,
    PROBES,
)

FORMATS: dict[str, Format] = {f.name: f for c in COMPONENTS for f in c.formats}


def config_of(config, component: Component):
    return getattr(getattr(config, component.section), component.name)


def listener_routes(config, pipeline, telemetry) -> list:
    """Route factories of the components on the shared HTTP listener (remote write, Zipkin, JSON lines)."""
    return [partial(c.http_routes, config_of(config, c), pipeline, telemetry) for c in COMPONENTS
            if c.http_routes is not None]


__all__ = ["COMPONENTS", "FORMATS", "Component", "Format", "config_of", "listener_routes"]
