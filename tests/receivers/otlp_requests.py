"""Building OTLP requests and talking raw HTTP to a gateway, for receiver tests."""

from __future__ import annotations

import http.client
import time
import uuid
from urllib.parse import urlparse

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

NS = 1_000_000_000


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def gauge_request(service: str, points: list[dict], name: str = "temperature") -> ExportMetricsServiceRequest:
    """One gauge metric; each point dict has value (float), time (ns) and attrs."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    metric = rm.scope_metrics.add().metrics.add(name=name, unit="Cel")
    now = time.time_ns()
    for p in points:
        dp = metric.gauge.data_points.add(time_unix_nano=p.get("time", now), as_double=p.get("value", 0.0))
        for key, text in p.get("attrs", {}).items():
            dp.attributes.add(key=key).value.string_value = text
    return request


def log_request(service: str, bodies: list[str]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = service
    scope = rl.scope_logs.add()
    for body in bodies:
        record = scope.log_records.add(time_unix_nano=time.time_ns(), severity_number=9, severity_text="INFO")
        record.body.string_value = body
    return request


def post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    target = urlparse(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
