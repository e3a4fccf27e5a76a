"""OTLP/JSON to OTLP protobuf bytes, per the OTLP JSON encoding rules.

Differences from the plain protobuf JSON mapping that OTLP requires: trace and
span ids are hex strings (case-insensitive), not base64. The rest (lowerCamelCase
keys or original names, enums as integers, int64 as string or number, unknown
fields ignored) is what `json_format` already accepts.
"""

from __future__ import annotations

import base64
import binascii
import json

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry_gateway.gateway.errors import BadRequest

REQUESTS = {
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
    "traces": ExportTraceServiceRequest,
}
_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _hex_ids_to_base64(node: object) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise BadRequest(f"{key} is not a hex string: {value[:64]!r}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def json_to_protobuf(signal: str, body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest("request body JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    _hex_ids_to_base64(data)
    message = REQUESTS[signal]()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise BadRequest(f"request body is not a valid OTLP/JSON {type(message).__name__}: {exc}") from None
    return message.SerializeToString()


def response_json(message) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()
