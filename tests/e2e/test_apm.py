"""OTLP traces from the real SDK span exporters, and Zipkin JSON, become RED series."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.receivers.otlp_requests import post, unique

pytestmark = pytest.mark.integration
NS = 1_000_000_000


def emit_spans(exporter, service: str, end_ns: int) -> dict[str, str]:
    """Server spans with known routes, statuses and durations; returns trace ids by role."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e")
    traces = {}
    for role, route, code, seconds, failed in (
        ("fast", "/pay", 200, 0.02, False), ("mid", "/pay", 200, 0.2, False), ("slow", "/pay", 200, 2.0, False),
        ("broken", "/pay", 500, 0.5, True), ("missing", "/cart", 404, 0.01, False),
    ):
        span = tracer.start_span(f"POST {route}", kind=SpanKind.SERVER, start_time=end_ns - int(seconds * NS),
                                 attributes={"http.route": route, "http.response.status_code": code})
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        traces[role] = f"{span.get_span_context().trace_id:032x}"
        span.end(end_time=end_ns)
    client = tracer.start_span("SELECT", kind=SpanKind.CLIENT, start_time=end_ns - NS)
    client.end(end_time=end_ns)
    assert provider.force_flush()
    provider.shutdown()
    return traces


def red(gateway, service: str, count: int) -> dict[tuple, dict]:
    rows = gateway.wait_rows(
        "SELECT metric_name, attributes['operation'] AS op, attributes['status_class'] AS cls, value, count, "
        f"bucket_counts, exemplar_trace_ids AS ex FROM telemetry.metric_points WHERE service_name = '{service}'", count
    )
    return {(r["metric_name"], r["op"], r["cls"]): r for r in rows}


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_sdk_spans_become_red_series(gateway, kind):
    service = unique(f"apm_{kind}")
    exporter = (GrpcSpanExporter(endpoint=gateway.grpc_endpoint, insecure=True) if kind == "grpc"
                else HttpSpanExporter(endpoint=gateway.http_url + "/v1/traces"))
    end_ns = (time.time_ns() // (10 * NS)) * (10 * NS) - 3 * NS
    traces = emit_spans(exporter, service, end_ns)
    rows = red(gateway, service, 9)
    assert {key: r["value"] for key, r in rows.items() if key[0] != "apm.request.duration"} == {
        ("apm.requests", "/pay", "2xx"): 3, ("apm.errors", "/pay", "2xx"): 0,
        ("apm.requests", "/pay", "5xx"): 1, ("apm.errors", "/pay", "5xx"): 1,
        ("apm.requests", "/cart", "4xx"): 1, ("apm.errors", "/cart", "4xx"): 0,
    }
    duration = rows[("apm.request.duration", "/pay", "2xx")]
    assert duration["count"] == 3 and sum(duration["bucket_counts"]) == 3
    assert [i for i, n in enumerate(duration["bucket_counts"]) if n] == [2, 6, 10]
    assert duration["ex"] == [traces["slow"]]
    assert rows[("apm.errors", "/pay", "5xx")]["ex"] == [traces["broken"]]


def test_the_real_zipkin_exporter_becomes_red_series(gateway):
    """The OpenTelemetry Zipkin JSON exporter (Zipkin v2) posts to /api/v2/spans."""
    service = unique("zipkin")
    end_ns = (time.time_ns() // (10 * NS)) * (10 * NS) - 3 * NS
    exporter = ZipkinExporter(endpoint=gateway.http_url + "/api/v2/spans")
    traces = emit_spans(exporter, service, end_ns)
    rows = red(gateway, service, 9)
    assert rows[("apm.requests", "/pay", "2xx")]["value"] == 3
    assert rows[("apm.errors", "/pay", "5xx")]["value"] == 1
    assert rows[("apm.requests", "/cart", "4xx")]["value"] == 1
    assert rows[("apm.request.duration", "/pay", "2xx")]["ex"] == [traces["slow"]]


def test_zipkin_garbage_is_a_400(gateway):
    code, _, body = post(gateway.http_url, "/api/v2/spans", b"{not json", {"Content-Type": "application/json"})
    assert code == 400 and b"not a valid Zipkin v2 span list" in body


def test_spans_are_stored_only_when_configured(start_gateway):
    gw = start_gateway({"apm": {"store_spans": True}})
    service = unique("spans")
    end_ns = time.time_ns() - 2 * NS
    traces = emit_spans(GrpcSpanExporter(endpoint=gw.grpc_endpoint, insecure=True), service, end_ns)
    rows = gw.wait_rows(
        "SELECT trace_id, name, kind, status_code, toString(duration_ns) AS d, attributes['http.route'] AS route "
        f"FROM telemetry.spans WHERE service_name = '{service}' ORDER BY time", 6)
    assert len(rows) == 6
    assert {r["kind"] for r in rows} == {"server", "client"}
    slow = next(r for r in rows if r["trace_id"] == traces["slow"])
    assert (slow["name"], slow["d"], slow["route"], slow["status_code"]) == ("POST /pay", str(2 * NS), "/pay", "unset")
    assert next(r for r in rows if r["trace_id"] == traces["broken"])["status_code"] == "error"
    assert red(gw, service, 9)[("apm.requests", "/pay", "2xx")]["value"] == 3  # RED series as well


def test_zipkin_spans_are_stored_too_when_configured(start_gateway):
    gw = start_gateway({"apm": {"store_spans": True}})
    service = unique("zipkin_spans")
    traces = emit_spans(ZipkinExporter(endpoint=gw.http_url + "/api/v2/spans"), service, time.time_ns() - 2 * NS)
    rows = gw.wait_rows(
        "SELECT trace_id, kind, status_code, toString(duration_ns) AS d, attributes['http.route'] AS route, scope_name "
        f"FROM telemetry.spans WHERE service_name = '{service}' ORDER BY time", 6)
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"server", "client"} and {r["scope_name"] for r in rows} == {"zipkin"}
    slow = next(r for r in rows if r["trace_id"] == traces["slow"])
    assert (slow["d"], slow["route"], slow["status_code"]) == (str(2 * NS), "/pay", "unset")
    assert next(r for r in rows if r["trace_id"] == traces["broken"])["status_code"] == "error"


def test_spans_are_not_stored_by_default(gateway):
    service = unique("nospans")
    emit_spans(GrpcSpanExporter(endpoint=gateway.grpc_endpoint, insecure=True), service, time.time_ns() - 2 * NS)
    red(gateway, service, 9)
    assert gateway.rows(f"SELECT count() AS n FROM telemetry.spans WHERE service_name = '{service}'") == [{"n": 0}]
