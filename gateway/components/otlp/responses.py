"""OTLP Export responses, with partial_success when items were refused or flagged."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from telemetry_gateway.gateway.report import IngestReport

RESPONSES = {  # signal -> (response message, partial_success field counting refused items)
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "traces": (ExportTraceServiceResponse, "rejected_spans"),
}


def export_response(signal: str, report: IngestReport):
    """Full success leaves partial_success unset; a warning has rejected = 0 and a message."""
    message_class, rejected_field = RESPONSES[signal]
    message = message_class()
    if report.message:
        setattr(message.partial_success, rejected_field, report.rejected)
        message.partial_success.error_message = report.message
    return message
