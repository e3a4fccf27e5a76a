"""OTLP Export responses, with partial_success when items were refused or flagged."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from gateway.pipeline import IngestReport


def export_response(signal: str, report: IngestReport):
    """Full success leaves partial_success unset; a warning has rejected = 0 and a message."""
    if signal == "metrics":
        message = ExportMetricsServiceResponse()
        if report.message:
            message.partial_success.rejected_data_points = report.rejected
            message.partial_success.error_message = report.message
        return message
    if signal == "traces":
        message = ExportTraceServiceResponse()
        if report.message:
            message.partial_success.rejected_spans = report.rejected
            message.partial_success.error_message = report.message
        return message
    message = ExportLogsServiceResponse()
    if report.message:
        message.partial_success.rejected_log_records = report.rejected
        message.partial_success.error_message = report.message
    return message
