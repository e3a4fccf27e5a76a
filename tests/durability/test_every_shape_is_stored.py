"""Property: whatever mix of sources, metric kinds, units, flags and log shapes arrives
together, every acknowledged row is stored exactly once by the real writer and store.

The pipeline runs in this process on the real engine (chDB) and a real spool; the
examples come from hypothesis and are sent in random order, so batches of different
shapes share inserts.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetry_gateway.adapters.probes import ProbeResult, add_probe
from telemetry_gateway.adapters.prometheus.families import Sample
from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.components.samples import Samples
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.pipeline import IngestPipeline
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.self_metrics import SelfMetrics

UNITS = ["ms", "s", "us", "By", "kBy", "%", "1", ""]
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))
ATTRS = st.dictionaries(st.sampled_from(["a", "b", "http.method", "le"]), st.text(max_size=5), max_size=3)


def _attrs(target, attrs: dict) -> None:
    for key, value in attrs.items():
        target.add(key=key).value.string_value = value


@st.composite
def metrics_request(draw) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    _attrs(rm.resource.attributes, {"service.name": draw(st.sampled_from(["a", "b"]))})
    now = time.time_ns()
    for _ in range(draw(st.integers(1, 4))):
        metric = rm.scope_metrics.add().metrics.add(name=draw(st.sampled_from(["m1", "m2", "http.server.duration"])),
                                                    unit=draw(st.sampled_from(UNITS)))
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary"]))
        for _ in range(draw(st.integers(1, 3))):
            flags = draw(st.sampled_from([0, 1]))
            if kind in ("gauge", "sum"):
                data = getattr(metric, kind)
                dp = data.data_points.add(time_unix_nano=now, as_double=draw(VALUES), flags=flags)
                if kind == "sum":
                    data.aggregation_temporality = draw(st.sampled_from([1, 2]))
                    data.is_monotonic = draw(st.booleans())
            elif kind == "histogram":
                metric.histogram.aggregation_temporality = 2
                dp = metric.histogram.data_points.add(time_unix_nano=now, start_time_unix_nano=now - 10**9, count=3,
                                                      sum=draw(VALUES), explicit_bounds=[1.0, 5.0], bucket_counts=[1, 1, 1],
                                                      flags=flags)
            elif kind == "exponential_histogram":
                metric.exponential_histogram.aggregation_temporality = 1
                dp = metric.exponential_histogram.data_points.add(time_unix_nano=now, count=2, sum=3.0, scale=draw(st.integers(-10, 20)),
                                                                  zero_count=1, flags=flags)
                dp.positive.offset = 1
                dp.positive.bucket_counts.extend([1])
            else:
                dp = metric.summary.data_points.add(time_unix_nano=now, count=2, sum=draw(VALUES), flags=flags)
                dp.quantile_values.add(quantile=0.5, value=draw(VALUES))
            _attrs(dp.attributes, draw(ATTRS))
    return request.SerializeToString()


@st.composite
def logs_request(draw) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    _attrs(rl.resource.attributes, {"service.name": "logsvc"})
    scope = rl.scope_logs.add()
    for _ in range(draw(st.integers(1, 4))):
        record = scope.log_records.add(time_unix_nano=draw(st.sampled_from([0, time.time_ns()])),
                                       observed_time_unix_nano=time.time_ns(), severity_number=draw(st.integers(0, 24)))
        shape = draw(st.sampled_from(["string", "int", "kvlist", "empty"]))
        if shape == "string":
            record.body.string_value = draw(st.text(max_size=20))
        elif shape == "int":
            record.body.int_value = draw(st.integers(-2**63, 2**63 - 1))
        elif shape == "kvlist":
            record.body.kvlist_value.values.add(key="k").value.double_value = draw(VALUES)
        _attrs(record.attributes, draw(ATTRS))
    return request.SerializeToString()


@st.composite
def traces_request(draw) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _attrs(rs.resource.attributes, {"service.name": "apmsvc"})
    scope = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(draw(st.integers(1, 4))):
        span = scope.spans.add(trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name="GET /x", kind=2,
                               start_time_unix_nano=now - draw(st.integers(1, 10**9)), end_time_unix_nano=now)
        span.status.code = draw(st.sampled_from([0, 1, 2]))
    return request.SerializeToString()


@st.composite
def remote_write_request(draw) -> bytes:
    request = WriteRequest()
    now_ms = time.time_ns() // 1_000_000
    for i in range(draw(st.integers(1, 4))):
        series = request.timeseries.add()
        name = draw(st.sampled_from(["up", "requests_total", "latency_seconds_bucket", "latency_seconds_count"]))
        for key, value in (("__name__", name), ("job", "rw"), ("i", str(i))):
            series.labels.append(Label(name=key.encode(), value=value.encode()).SerializeToString())
        series.samples.add(value=draw(VALUES), timestamp=now_ms - i)
    return request.SerializeToString()  # as the route hands it on, after snappy


CALLER = Caller("test", "127.0.0.1")
FORMAT_OF = {"metrics": "otlp_metrics", "logs": "otlp_logs", "traces": "otlp_traces"}
SPAN_FORMATS = ("otlp_traces", "zipkin")  # their items are spans; the RED rows they make are derived


SOURCES = st.one_of(
    st.tuples(st.just("metrics"), metrics_request()),
    st.tuples(st.just("logs"), logs_request()),
    st.tuples(st.just("traces"), traces_request()),
    st.tuples(st.just("remote_write"), remote_write_request()),
    st.tuples(st.just("jsonlines"), st.lists(st.sampled_from([b'{"msg":"x","level":"warn"}', b'{"message":1e3}', b"not json"]),
                                             min_size=1, max_size=3).map(b"\n".join)),
    st.tuples(st.just("syslog"), st.lists(st.tuples(st.integers(0, 191), st.text(max_size=30)).map(
        lambda p: f"<{p[0]}>1 {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} host app - - - {p[1]}".encode()),
        min_size=1, max_size=3)),
    st.tuples(st.just("scrape"), st.lists(VALUES, min_size=1, max_size=3)),
    st.tuples(st.just("probe"), st.floats(0, 10)),
)


class Harness:
    def __init__(self, path) -> None:
        config = GatewayConfig.model_validate({
            "store": {"path": str(path), "batch": {"max_delay": "20ms", "ingest_log_max_delay": "20ms"},
                      "regions": {"default": {"database": f"prop_{uuid.uuid4().hex[:10]}"}}},
            "spool": {"path": str(path / f"spool-{uuid.uuid4().hex[:6]}")},
            "log_metrics": [{"name": "log.records", "preset": "severity_by_service"}],
            "apm": {"store_spans": True},
        })
        self.telemetry = SelfMetrics()
        self.stores = RegionStores(config.store)
        self.stores.open()
        self.store = self.stores["default"]
        self.pipeline = IngestPipeline(config, self.stores, self.telemetry)

    async def send(self, source: str, payload) -> None:
        now_ms = time.time_ns() // 1_000_000
        try:
            if source == "scrape":
                samples = [Sample("scraped_value", {"job": "node", "n": str(i)}, v, now_ms) for i, v in enumerate(payload)]
                await self.pipeline.ingest("scrape", Samples(samples, lambda _: None), CALLER)
            elif source == "probe":
                result = ProbeResult("http://x", "http", "http", "here", time.time_ns(), True, payload, {"connect": payload / 2}, 200)
                await self.pipeline.ingest("probes", Samples([], lambda _: None, lambda rows: add_probe(rows, result, "probes")),
                                           CALLER)
            else:
                await self.pipeline.ingest(FORMAT_OF.get(source, source), payload, CALLER)
        except GatewayError:
            pass  # refused whole: nothing of it was acknowledged, nothing may be stored

    def _counted(self, name: str, keep=lambda labels: True) -> int:
        return int(sum(sample.value for metric in self.telemetry.registry.collect() for sample in metric.samples
                       if sample.name == name and keep(sample.labels)))

    def accepted(self, tables: tuple[str, ...] = ("metric_points", "log_records")) -> int:
        """Rows acknowledged so far, by the gateway's own accounting: items of the formats that fill
        these tables, less what stages dropped, plus what stages derived into them."""
        kept = self._counted("gateway_accepted_total", lambda labels: labels["format"] not in SPAN_FORMATS)
        dropped = self._counted("gateway_dropped_total", lambda labels: labels["stage"] != "span_rows")
        derived = self._counted("gateway_derived_total", lambda labels: labels["table"] in tables)
        return kept - dropped + derived

    def logged(self, table: str) -> int:
        """Rows handed to the sink for `table`, by the ingest_log."""
        db = self.store.database
        return int(self.store.execute(f"SELECT sum(stored_rows['{table}']) FROM {db}.ingest_log").strip() or 0)

    def stored(self, tables: tuple[str, ...] = ("metric_points", "log_records")) -> int:
        db = self.store.database
        return sum(int(self.store.execute(f"SELECT count() FROM {db}.{table}").strip()) for table in tables)

    async def settle(self) -> None:
        await self.pipeline.red.close_due(time.time_ns() + 10**15)  # every RED window, open or not
        deadline = time.monotonic() + 60
        while any(w.pending_rows for w in self.pipeline.writers.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def test_every_acknowledged_row_is_stored_once(embedded_path):
    harness = Harness(embedded_path)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_start(harness))
    spans_sent = 0

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(SOURCES, min_size=1, max_size=8))
    def mix(requests):
        nonlocal spans_sent

        async def run():
            await asyncio.gather(*(harness.send(source, payload) for source, payload in requests))
            await harness.settle()

        loop.run_until_complete(run())
        spans_sent += sum(len(ExportTraceServiceRequest.FromString(p).resource_spans[0].scope_spans[0].spans)
                          for source, p in requests if source == "traces")
        assert not harness.pipeline.health()
        assert harness.stored() == harness.accepted()
        # Every request's rows are in its ingest_log row, but RED points: they are written per window.
        red_written = harness._counted("gateway_derived_total", lambda labels: labels["stage"] == "red_series")
        assert harness.stored() == harness.logged("metric_points") + harness.logged("log_records") + red_written
        assert harness.stored(("spans",)) == spans_sent

    try:
        mix()
    finally:
        loop.run_until_complete(harness.pipeline.drain())
        loop.run_until_complete(harness.pipeline.close())
        loop.close()
    assert harness.accepted() > 0
    assert "gateway_dead_letter_batches_total{" not in harness.telemetry.exposition().decode()


async def _start(harness: Harness) -> None:
    harness.pipeline.start()
