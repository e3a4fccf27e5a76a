"""Prometheus remote write 1.0 (POST /api/v1/write on the HTTP listener)."""

from __future__ import annotations

from telemetry_gateway.adapters.prometheus import remote_write
from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.remote_write.config import RemoteWriteConfig
from telemetry_gateway.schema import POINTS

FORMAT = Format("remote_write", "metrics", "remote_write", "Prometheus WriteRequest", "samples", POINTS,
                remote_write.decode_received,
                lambda r, ctx, st: remote_write.remote_write_to_arrow(r.message, st.prometheus, st.sets, raw=r.raw))


def http_routes(config: RemoteWriteConfig, pipeline, metrics, limit: int, read_body) -> list:
    from telemetry_gateway.gateway.components.remote_write.route import RemoteWriteRoute

    return [RemoteWriteRoute(pipeline, metrics, limit, read_body)] if config.enabled else []


COMPONENT = Component("remote_write", "receivers", RemoteWriteConfig, (FORMAT,), http_routes=http_routes)
