"""OTLP metrics, logs and traces over gRPC (4317) and HTTP (4318, protobuf and JSON)."""

from __future__ import annotations

from telemetry_gateway.adapters.apm import otlp_traces
from telemetry_gateway.adapters.base import AdaptResult, Outcome
from telemetry_gateway.adapters.otlp import logs, metrics
from telemetry_gateway.gateway.components.base import Component, Format
from telemetry_gateway.gateway.components.otlp.config import OtlpConfig
from telemetry_gateway.schema import LOGS, POINTS


def span_facts(facts_and_refused) -> AdaptResult:
    """Span formats hand the RED stage their facts; refused spans are counted here."""
    facts, refused = facts_and_refused
    outcome = Outcome()
    outcome.reject("invalid_span", "span ids, attributes, name or fields are not valid", refused)
    return AdaptResult([], outcome, spans=facts)


FORMATS = (
    Format("otlp_metrics", "metrics", "otlp", "OTLP ExportMetricsServiceRequest", "data points", POINTS,
           metrics.decode_received, lambda r, ctx, st: metrics.adapt_received(r, st.sets), in_workers=True),
    Format("otlp_logs", "logs", "otlp", "OTLP ExportLogsServiceRequest", "log records", LOGS,
           logs.decode_request, lambda r, ctx, st: logs.logs_to_arrow(r, ctx, st.sets), in_workers=True),
    Format("otlp_traces", "traces", "apm", "OTLP ExportTraceServiceRequest", "spans", None,
           otlp_traces.decode_request, lambda r, ctx, st: span_facts(otlp_traces.span_facts(r, st.sets)),
           span_rows=otlp_traces.spans_to_arrow),
)


def service(config: OtlpConfig, pipeline, metrics_, http_routes: list, shared_port: bool = False):
    """The listeners; `shared_port` in listener workers, which bind the same ports (SO_REUSEPORT)."""
    from telemetry_gateway.gateway.components.otlp.grpc import OtlpGrpcReceiver
    from telemetry_gateway.gateway.components.otlp.http import OtlpHttpReceiver

    listeners = []
    if config.grpc.enabled:
        listeners.append(OtlpGrpcReceiver(config.grpc, pipeline, metrics_, shared_port))
    if config.http.enabled:
        listeners.append(OtlpHttpReceiver(config.http, pipeline, metrics_, http_routes, shared_port))
    return listeners


COMPONENT = Component("otlp", "receivers", OtlpConfig, FORMATS, service=service)
