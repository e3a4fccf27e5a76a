"""The real opentelemetry-sdk OTLP exporters (gRPC and HTTP) against a real gateway."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.receivers.otlp_requests import unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(listener_gateway):
    return listener_gateway


def metric_exporter(kind: str, gateway):
    if kind == "grpc":
        return GrpcMetricExporter(endpoint=gateway.grpc_endpoint, insecure=True)
    return HttpMetricExporter(endpoint=gateway.http_url + "/v1/metrics")


def log_exporter(kind: str, gateway):
    if kind == "grpc":
        return GrpcLogExporter(endpoint=gateway.grpc_endpoint, insecure=True)
    return HttpLogExporter(endpoint=gateway.http_url + "/v1/logs")


def emit_every_instrument(exporter, service: str) -> None:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation(max_size=20))]
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service}), views=views)
    meter = provider.get_meter("e2e", "1.0")
    meter.create_counter("orders", unit="1", description="Orders").add(3, {"method": "card"})
    meter.create_up_down_counter("inflight", unit="{request}").add(-2)
    latency = meter.create_histogram("latency", unit="ms")
    for v in (5, 50, 500):
        latency.record(v, {"route": "/pay"})
    size = meter.create_histogram("payload.size", unit="By")
    for v in (1, 1000):
        size.record(v)
    meter.create_gauge("temperature", unit="Cel").set(21.5, {"room": "lab"})
    meter.create_observable_gauge("load", [lambda _: [Observation(0.5)]])
    meter.create_observable_counter("cpu.seconds", [lambda _: [Observation(7.25)]], unit="s")
    meter.create_observable_up_down_counter("connections", [lambda _: [Observation(4)]])
    assert provider.force_flush()
    provider.shutdown()


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_every_instrument_kind_is_stored_exactly(gateway, kind):
    service = unique(f"sdk_{kind}")
    before = time.time_ns()
    emit_every_instrument(metric_exporter(kind, gateway), service)
    after = time.time_ns()
    rows = gateway.wait_rows(
        "SELECT metric_name, kind, temporality, is_monotonic, unit, description, toString(value) AS value, count, sum, "
        "min, max, bucket_bounds, bucket_counts, exp_positive_counts, attributes, scope_name, scope_version, "
        "toString(toUnixTimestamp64Nano(time)) AS t, toString(toUnixTimestamp64Nano(start_time)) AS st "
        f"FROM telemetry.metric_points WHERE service_name = '{service}' ORDER BY metric_name, time", 16
    )
    # force_flush and shutdown each export cumulative state: every series arrives twice.
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        assert before <= int(row.pop("t")) <= after
        assert int(row.pop("st")) <= after
        assert (row.pop("scope_name"), row.pop("scope_version")) == ("e2e", "1.0")
        by_name.setdefault(row["metric_name"], []).append(row)
    assert sorted(by_name) == ["connections", "cpu.seconds", "inflight", "latency", "load", "orders", "payload.size", "temperature"]
    assert all(len(points) == 2 and points[0] == points[1] for points in by_name.values())
    first = {name: points[0] for name, points in by_name.items()}
    base = {"description": "", "count": 0, "sum": None, "min": None, "max": None, "bucket_bounds": [], "bucket_counts": [],
            "exp_positive_counts": [], "attributes": {}}
    assert first["orders"] == {**base, "metric_name": "orders", "kind": "sum", "temporality": "cumulative", "is_monotonic": True,
                               "unit": "1", "description": "Orders", "value": "3", "attributes": {"method": "card"}}
    assert first["inflight"] == {**base, "metric_name": "inflight", "kind": "sum", "temporality": "cumulative",
                                 "is_monotonic": False, "unit": "{request}", "value": "-2"}
    latency = first["latency"]
    # Recorded in ms, stored in seconds (normalize.units).
    assert (latency["kind"], latency["unit"], latency["count"]) == ("histogram", "s", 3)
    assert (latency["sum"], latency["min"], latency["max"]) == (pytest.approx(0.555), 0.005, 0.5)
    assert latency["bucket_bounds"] == pytest.approx([0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1,
                                                      2.5, 5, 7.5, 10])
    assert latency["bucket_counts"] == [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert latency["attributes"] == {"route": "/pay"} and latency["value"] == "nan"
    size = first["payload.size"]
    assert (size["kind"], size["count"], size["sum"], sum(size["exp_positive_counts"])) == ("exponential_histogram", 2, 1001, 2)
    assert first["temperature"] == {**base, "metric_name": "temperature", "kind": "gauge", "temporality": "unspecified",
                                    "is_monotonic": False, "unit": "Cel", "value": "21.5", "attributes": {"room": "lab"}}
    assert (first["load"]["kind"], first["load"]["value"]) == ("gauge", "0.5")
    assert (first["cpu.seconds"]["kind"], first["cpu.seconds"]["is_monotonic"], first["cpu.seconds"]["value"]) == ("sum", True, "7.25")
    assert (first["connections"]["kind"], first["connections"]["is_monotonic"], first["connections"]["value"]) == ("sum", False, "4")


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_log_records_are_stored_exactly(gateway, kind):
    service = unique(f"sdk_logs_{kind}")
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter(kind, gateway)))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(f"e2e.{kind}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    tracer = TracerProvider().get_tracer("e2e")
    with tracer.start_as_current_span("pay") as span:
        logger.warning("card declined", extra={"order.id": "A-7", "attempt": 2})
        context = span.get_span_context()
    logger.error("no span here")
    assert provider.force_flush()
    provider.shutdown()
    logger.removeHandler(handler)
    rows = gateway.wait_rows(
        "SELECT body, severity_text, severity_number, trace_id, span_id, attributes['order.id'] AS order_id, "
        f"attributes['attempt'] AS attempt, scope_name FROM telemetry.log_records WHERE service_name = '{service}' ORDER BY time", 2
    )
    assert rows == [
        {"body": "card declined", "severity_text": "WARN", "severity_number": 13, "trace_id": f"{context.trace_id:032x}",
         "span_id": f"{context.span_id:016x}", "order_id": "A-7", "attempt": "2", "scope_name": f"e2e.{kind}"},
        {"body": "no span here", "severity_text": "ERROR", "severity_number": 17, "trace_id": "", "span_id": "",
         "order_id": "", "attempt": "", "scope_name": f"e2e.{kind}"},
    ]
