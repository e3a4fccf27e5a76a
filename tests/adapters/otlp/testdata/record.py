"""Record real OTLP payloads from the opentelemetry-sdk exporters.

Run `python tests/adapters/otlp/testdata/record.py` to refresh the fixtures:
it starts a capture server on a free localhost port, points the SDK's
OTLP/HTTP exporters at it and writes each request body as it arrived.
The golden rows beside the tests then need regenerating (see test_metrics.py).
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

HERE = Path(__file__).parent
captured: dict[str, list[bytes]] = {"/v1/metrics": [], "/v1/logs": []}


class Capture(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        captured[self.path].append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emit_metrics(endpoint: str) -> None:
    resource = Resource.create({"service.name": "checkout", "service.version": "1.4.2", "deployment.environment": "prod"})
    exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", compression=Compression.NoCompression)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation(max_size=20))]
    provider = MeterProvider(metric_readers=[reader], resource=resource, views=views)
    meter = provider.get_meter("checkout.instrumentation", "0.9.0")
    meter.create_counter("orders.placed", unit="1", description="Orders placed").add(5, {"payment.method": "card", "retry": False})
    meter.create_counter("orders.placed", unit="1", description="Orders placed").add(2, {"payment.method": "invoice", "retry": True})
    meter.create_up_down_counter("cart.items", unit="{item}").add(-3, {"cart.size": 7})
    latency = meter.create_histogram("http.server.request.duration", unit="s", description="Request duration")
    for v in (0.004, 0.02, 0.2, 1.5):
        latency.record(v, {"http.route": "/checkout", "http.response.status_code": 200})
    size = meter.create_histogram("payload.size", unit="By")
    for v in (100, 2000, 35000):
        size.record(v)
    meter.create_gauge("queue.depth", unit="{message}").set(42.5, {"queue": "orders"})
    meter.create_observable_gauge("cpu.utilization", [lambda _: [Observation(0.375, {"cpu": 0})]], unit="1")
    meter.create_observable_counter("process.cpu.time", [lambda _: [Observation(12.25, {"state": "user"})]], unit="s")
    meter.create_observable_up_down_counter("pool.connections", [lambda _: [Observation(9, {"pool": "db"})]])
    provider.force_flush()
    provider.shutdown()


def emit_logs(endpoint: str) -> None:
    resource = Resource.create({"service.name": "checkout"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint + "/v1/logs")))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger("checkout.payments")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.info("payment accepted", extra={"order.id": "A-1001", "amount": 12.5})
    logger.warning("card declined: %s", "insufficient funds", extra={"attempt": 2})
    logger.error("gateway timeout")
    provider.shutdown()
    logger.removeHandler(handler)


def main() -> None:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    emit_metrics(endpoint)
    emit_logs(endpoint)
    server.shutdown()
    (HERE / "sdk_metrics.binpb").write_bytes(captured["/v1/metrics"][0])
    (HERE / "sdk_logs.binpb").write_bytes(captured["/v1/logs"][0])
    print({k: len(v) for k, v in captured.items()})


if __name__ == "__main__":
    main()
