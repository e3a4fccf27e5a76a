"""JSON lines logs (POST /v1/logs/jsonl on the HTTP listener)."""

from __future__ import annotations

from telemetry_gateway.adapters.jsonlines import jsonlines_to_arrow
from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.jsonlines.config import JsonlinesConfig
from telemetry_gateway.schema import LOGS

FORMAT = Format("jsonlines", "logs", "log", "JSON lines body", "lines", LOGS, lambda body: body,
                lambda r, ctx, st: jsonlines_to_arrow(r, ctx, st.sets.limits))


def http_routes(config: JsonlinesConfig, pipeline, metrics, limit: int, read_body) -> list:
    from telemetry_gateway.gateway.components.jsonlines.route import JsonLinesRoute

    return [JsonLinesRoute(pipeline, metrics, limit, read_body)] if config.enabled else []


COMPONENT = Component("jsonlines", "receivers", JsonlinesConfig, (FORMAT,), http_routes=http_routes)
