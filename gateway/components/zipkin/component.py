"""Zipkin v2 JSON spans (POST /api/v2/spans on the HTTP listener), for RED series."""

from __future__ import annotations

from telemetry_gateway.adapters.apm import zipkin
from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.otlp.component import span_facts
from telemetry_gateway.gateway.components.zipkin.config import ZipkinConfig

FORMAT = Format("zipkin", "traces", "apm", "Zipkin v2 span list", "spans", None, zipkin.decode,
                lambda r, ctx, st: span_facts(zipkin.span_facts(r)), span_rows=zipkin.spans_to_arrow)


def http_routes(config: ZipkinConfig, pipeline, metrics, limit: int, read_body) -> list:
    from telemetry_gateway.gateway.components.zipkin.route import ZipkinRoute

    return [ZipkinRoute(pipeline, metrics, limit, read_body)] if config.enabled else []


COMPONENT = Component("zipkin", "receivers", ZipkinConfig, (FORMAT,), http_routes=http_routes)
