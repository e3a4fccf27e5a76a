"""Tools built for the Collector's ClickHouse exporter read our store: its tables' names, columns and
types are there as views, and the queries Grafana's ClickHouse data source generates for them answer
with what was sent (by the real SDK exporters, and one OTLP request with every metric kind)."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.receivers.otlp_requests import post, unique
from tests.store.testdata.make_v6_store import every_kind

pytestmark = pytest.mark.integration
NS = 1_000_000_000
_MAP = "Map(LowCardinality(String), String)"
_HEAD = [("ResourceAttributes", _MAP), ("ResourceSchemaUrl", "String"), ("ScopeName", "String"),
         ("ScopeVersion", "String"), ("ScopeAttributes", _MAP), ("ScopeDroppedAttrCount", "UInt32"),
         ("ScopeSchemaUrl", "String"), ("ServiceName", "LowCardinality(String)"), ("MetricName", "String"),
         ("MetricDescription", "String"), ("MetricUnit", "String"), ("Attributes", _MAP),
         ("StartTimeUnix", "DateTime64(9)"), ("TimeUnix", "DateTime64(9)")]
_EXEMPLARS = [("Exemplars.FilteredAttributes", f"Array({_MAP})"), ("Exemplars.TimeUnix", "Array(DateTime64(9))"),
              ("Exemplars.Value", "Array(Float64)"), ("Exemplars.SpanId", "Array(String)"),
              ("Exemplars.TraceId", "Array(String)")]
_HIST_TAIL = [("Flags", "UInt32"), ("Min", "Float64"), ("Max", "Float64"), ("AggregationTemporality", "Int32")]
# Columns and types as the exporter's SQL templates create them (opentelemetry-collector-contrib,
# exporter/clickhouseexporter/internal/sqltemplates/*_table.sql; Nested columns read as their arrays).
EXPORTER_COLUMNS = {
    "otel_metrics_gauge": _HEAD + [("Value", "Float64"), ("Flags", "UInt32")] + _EXEMPLARS,
    "otel_metrics_sum": _HEAD + [("Value", "Float64"), ("Flags", "UInt32")] + _EXEMPLARS
    + [("AggregationTemporality", "Int32"), ("IsMonotonic", "Bool")],
    "otel_metrics_histogram": _HEAD + [("Count", "UInt64"), ("Sum", "Float64"), ("BucketCounts", "Array(UInt64)"),
                                       ("ExplicitBounds", "Array(Float64)")] + _EXEMPLARS + _HIST_TAIL,
    "otel_metrics_exponential_histogram": _HEAD + [
        ("Count", "UInt64"), ("Sum", "Float64"), ("Scale", "Int32"), ("ZeroCount", "UInt64"),
        ("PositiveOffset", "Int32"), ("PositiveBucketCounts", "Array(UInt64)"), ("NegativeOffset", "Int32"),
        ("NegativeBucketCounts", "Array(UInt64)")] + _EXEMPLARS + _HIST_TAIL,
    "otel_metrics_summary": _HEAD + [("Count", "UInt64"), ("Sum", "Float64"),
                                     ("ValueAtQuantiles.Quantile", "Array(Float64)"),
                                     ("ValueAtQuantiles.Value", "Array(Float64)"), ("Flags", "UInt32")],
    "otel_logs": [
        ("Timestamp", "DateTime64(9)"), ("TimestampTime", "DateTime"), ("TraceId", "String"), ("SpanId", "String"),
        ("TraceFlags", "UInt8"), ("SeverityText", "LowCardinality(String)"), ("SeverityNumber", "UInt8"),
        ("ServiceName", "LowCardinality(String)"), ("Body", "String"), ("ResourceSchemaUrl", "LowCardinality(String)"),
        ("ResourceAttributes", _MAP), ("ScopeSchemaUrl", "LowCardinality(String)"), ("ScopeName", "String"),
        ("ScopeVersion", "LowCardinality(String)"), ("ScopeAttributes", _MAP), ("LogAttributes", _MAP),
        ("EventName", "String")],
    "otel_traces": [
        ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("ParentSpanId", "String"),
        ("TraceState", "String"), ("SpanName", "LowCardinality(String)"), ("SpanKind", "LowCardinality(String)"),
        ("ServiceName", "LowCardinality(String)"), ("ResourceAttributes", _MAP), ("ScopeName", "String"),
        ("ScopeVersion", "String"), ("SpanAttributes", _MAP), ("Duration", "UInt64"),
        ("StatusCode", "LowCardinality(String)"), ("StatusMessage", "String"),
        ("Events.Timestamp", "Array(DateTime64(9))"), ("Events.Name", "Array(LowCardinality(String))"),
        ("Events.Attributes", f"Array({_MAP})"), ("Links.TraceId", "Array(String)"), ("Links.SpanId", "Array(String)"),
        ("Links.TraceState", "Array(String)"), ("Links.Attributes", f"Array({_MAP})")],
    "otel_traces_trace_id_ts": [("TraceId", "String"), ("Start", "DateTime64(9)"), ("End", "DateTime64(9)")],
}


@pytest.fixture(scope="module")
def spans_gateway(tmp_path_factory):
    from tests.gateway_process import GatewayProcess

    proc = GatewayProcess(tmp_path_factory.mktemp("otel"), {"apm": {"store_spans": True}}).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def grafana(sql: str, since_ns: int) -> str:
    """Grafana's time-range macros as the data source expands them (milliseconds)."""
    return (sql.replace("$__fromTime", f"fromUnixTimestamp64Milli({since_ns // 1_000_000})")
               .replace("$__toTime", f"fromUnixTimestamp64Milli({time.time_ns() // 1_000_000 + 60_000})"))


def test_the_exporter_tables_are_views_with_its_columns(spans_gateway):
    for view, columns in EXPORTER_COLUMNS.items():
        rows = spans_gateway.rows("SELECT name, type FROM system.columns WHERE database = 'telemetry' "
                                  f"AND table = '{view}' ORDER BY position")
        assert [(r["name"], r["type"]) for r in rows] == columns, view


def test_metric_tables_answer_with_what_was_sent(spans_gateway):
    service = unique("otel_metrics")
    now = time.time_ns()
    code, _, body = post(spans_gateway.http_url, "/v1/metrics", every_kind(now - NS, "queued items", service, now - 600 * NS),
                         {"Content-Type": "application/x-protobuf"})
    assert code == 200, body
    where = f"ServiceName = '{service}'"
    # Grafana's time series builder: time column aliased "time", filtered by the dashboard's range.
    gauge = spans_gateway.wait_rows(grafana(
        'SELECT TimeUnix as "time", Value, Attributes[\'queue\'] as queue FROM "telemetry"."otel_metrics_gauge" '
        f"WHERE ( time >= $__fromTime AND time <= $__toTime ) AND ( MetricName = 'queue.depth' ) AND {where} "
        "ORDER BY time ASC LIMIT 1000", now - 60 * NS), 2)
    assert [(r["queue"], r["Value"]) for r in gauge] == [("b", 11), ("a", 10)]
    total = spans_gateway.rows(f"SELECT Value, AggregationTemporality, IsMonotonic, MetricDescription, MetricUnit "
                               f"FROM telemetry.otel_metrics_sum WHERE MetricName = 'orders' AND {where}")
    assert total == [{"Value": 42.5, "AggregationTemporality": 2, "IsMonotonic": True,
                      "MetricDescription": "queued items", "MetricUnit": "{order}"}]
    # A percentile from the buckets, as dashboards on this exporter compute it; the gateway stores
    # durations in seconds (sent in ms).
    hist = spans_gateway.rows(
        "SELECT sum(Count) AS n, sumForEach(BucketCounts) AS counts, any(ExplicitBounds) AS bounds, "
        "bounds[arrayFirstIndex(c -> c >= 0.5 * n, arrayCumSum(counts))] AS p50, any(Min) AS lo, any(Max) AS hi "
        f"FROM telemetry.otel_metrics_histogram WHERE MetricName = 'latency' AND {where}")
    assert hist == [{"n": 6, "counts": [2, 3, 1], "bounds": [0.005, 0.025], "p50": 0.025, "lo": 0.001, "hi": 0.04}]
    expo = spans_gateway.rows(
        "SELECT Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, NegativeOffset, NegativeBucketCounts "
        f"FROM telemetry.otel_metrics_exponential_histogram WHERE {where}")
    assert expo == [{"Count": 5, "Sum": 31, "Scale": 1, "ZeroCount": 1, "PositiveOffset": 2,
                     "PositiveBucketCounts": [1, 2], "NegativeOffset": -1, "NegativeBucketCounts": [1]}]
    summary = spans_gateway.rows('SELECT Count, Sum, "ValueAtQuantiles.Quantile" AS q, "ValueAtQuantiles.Value" AS v '
                                 f"FROM telemetry.otel_metrics_summary WHERE {where}")
    assert summary == [{"Count": 4, "Sum": 0.8, "q": [0.5, 0.99], "v": [0.1, 0.4]}]


def test_logs_read_as_grafana_reads_them(spans_gateway):
    service = unique("otel_logs")
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=spans_gateway.http_url + "/v1/logs")))
    logger = logging.getLogger(service)
    logger.addHandler(LoggingHandler(logger_provider=provider))
    logger.propagate = False
    since = time.time_ns() - 60 * NS
    logger.warning("card declined", extra={"order.id": "o-17"})
    logger.error("payment failed")
    provider.shutdown()
    rows = spans_gateway.wait_rows(grafana(
        'SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level", LogAttributes as "labels", '
        'TraceId as "traceID" FROM "telemetry"."otel_logs" WHERE ( timestamp >= $__fromTime AND timestamp <= $__toTime ) '
        f"AND ( ServiceName = '{service}' ) ORDER BY timestamp DESC LIMIT 1000", since), 2)
    assert [(r["body"], r["level"]) for r in rows] == [("payment failed", "ERROR"), ("card declined", "WARN")]
    assert rows[1]["labels"]["order.id"] == "o-17"


def test_traces_read_as_grafana_reads_them(spans_gateway):
    service = unique("otel_traces")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=spans_gateway.http_url + "/v1/traces")))
    tracer = provider.get_tracer("e2e")
    end = time.time_ns() - NS
    root = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=end - 300_000_000,
                             attributes={"http.route": "/pay"})
    root.set_status(Status(StatusCode.ERROR))
    trace_id = f"{root.get_span_context().trace_id:032x}"
    from opentelemetry import trace as api

    child = tracer.start_span("SELECT", kind=SpanKind.CLIENT, start_time=end - 200_000_000,
                              context=api.set_span_in_context(root))
    child.end(end_time=end - 100_000_000)
    root.end(end_time=end)
    provider.shutdown()
    since = end - 60 * NS
    # The trace search query of the data source (OTel mode): root spans in the time range.
    search = spans_gateway.wait_rows(grafana(
        'SELECT "TraceId" as traceID, "ServiceName" as serviceName, "SpanName" as operationName, '
        '"Timestamp" as startTime, multiply("Duration", 0.000001) as duration FROM "telemetry"."otel_traces" '
        "WHERE ( Timestamp >= $__fromTime AND Timestamp <= $__toTime ) AND ( ParentSpanId = '' ) AND ( Duration > 0 ) "
        f"AND ( ServiceName = '{service}' ) ORDER BY Timestamp DESC, Duration DESC LIMIT 1000", since), 1)
    assert [(r["traceID"], r["operationName"], r["duration"]) for r in search] == [(trace_id, "POST /pay", 300)]
    # The trace view, bounded by otel_traces_trace_id_ts as the data source does in OTel mode.
    spans = spans_gateway.rows(
        f"WITH '{trace_id}' as trace_id, (SELECT min(Start) FROM \"telemetry\".\"otel_traces_trace_id_ts\" "
        "WHERE TraceId = trace_id) as trace_start, (SELECT max(End) + 1 FROM \"telemetry\".\"otel_traces_trace_id_ts\" "
        'WHERE TraceId = trace_id) as trace_end SELECT "TraceId" as traceID, "SpanId" as spanID, '
        '"ParentSpanId" as parentSpanID, "ServiceName" as serviceName, "SpanName" as operationName, '
        'multiply(toUnixTimestamp64Nano("Timestamp"), 0.000001) as startTime, multiply("Duration", 0.000001) as duration, '
        "arrayMap(key -> map('key', key, 'value',\"SpanAttributes\"[key]), mapKeys(\"SpanAttributes\")) as tags, "
        "arrayMap(key -> map('key', key, 'value',\"ResourceAttributes\"[key]), mapKeys(\"ResourceAttributes\")) as serviceTags, "
        "if(\"StatusCode\" IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) as statusCode "
        'FROM "telemetry"."otel_traces" WHERE traceID = trace_id AND "Timestamp" >= trace_start '
        'AND "Timestamp" <= trace_end LIMIT 1000')
    by_name = {r["operationName"]: r for r in spans}
    assert set(by_name) == {"POST /pay", "SELECT"}
    assert by_name["SELECT"]["parentSpanID"] == by_name["POST /pay"]["spanID"]
    assert (by_name["POST /pay"]["statusCode"], by_name["SELECT"]["statusCode"]) == (2, 0)
    assert by_name["POST /pay"]["duration"] == 300 and by_name["SELECT"]["duration"] == 100
    assert {"key": "http.route", "value": "/pay"} in by_name["POST /pay"]["tags"]
    kinds = spans_gateway.rows(f"SELECT SpanName, SpanKind FROM telemetry.otel_traces WHERE TraceId = '{trace_id}' "
                               "ORDER BY SpanName")
    assert kinds == [{"SpanName": "POST /pay", "SpanKind": "SPAN_KIND_SERVER"},
                     {"SpanName": "SELECT", "SpanKind": "SPAN_KIND_CLIENT"}]
