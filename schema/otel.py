"""Views in the shape of the OpenTelemetry Collector ClickHouse exporter's tables.

Grafana's ClickHouse data source (OpenTelemetry mode), ClickStack/HyperDX and
dashboards written for that exporter read `otel_metrics_gauge`, `_sum`,
`_histogram`, `_exponential_histogram`, `_summary`, `otel_logs`,
`otel_traces` and `otel_traces_trace_id_ts`. These views give them our rows
under the exporter's column names and types, as its SQL templates create them
(opentelemetry-collector-contrib `exporter/clickhouseexporter/internal/sqltemplates`,
read 2026-11-30): span kinds and status codes as `SPAN_KIND_SERVER` and
`STATUS_CODE_ERROR`, temporality as the OTLP enum number.

What we do not keep reads as empty: schema URLs, scope attributes, span
events and links, trace state, exemplar values (only their trace ids are
kept). Spans are there only with `apm.store_spans` on.
"""

from __future__ import annotations

from telemetry_gateway.schema.model import View

OTEL_VERSION = 8
_MAP = "Map(LowCardinality(String), String)"
_TIME = "DateTime64(9)"


def _plain(time_expr: str) -> str:
    # Our times carry the 'UTC' zone, the exporter's none; a CAST keeps the zone, a round trip drops it.
    return f"fromUnixTimestamp64Nano(toUnixTimestamp64Nano({time_expr}))"


def _cols(*specs: tuple[str, str, str]) -> str:
    return ", ".join(f"CAST({expr} AS {type_}) AS `{name}`" for name, type_, expr in specs)


_METRIC_HEAD = (
    ("ResourceAttributes", _MAP, "resource_attributes"),
    ("ResourceSchemaUrl", "String", "''"),
    ("ScopeName", "String", "scope_name"),
    ("ScopeVersion", "String", "scope_version"),
    ("ScopeAttributes", _MAP, "map()"),
    ("ScopeDroppedAttrCount", "UInt32", "0"),
    ("ScopeSchemaUrl", "String", "''"),
    ("ServiceName", "LowCardinality(String)", "service_name"),
    ("MetricName", "String", "metric_name"),
    ("MetricDescription", "String", "description"),
    ("MetricUnit", "String", "unit"),
    ("Attributes", _MAP, "attributes"),
    ("StartTimeUnix", _TIME, _plain("start_time")),
    ("TimeUnix", _TIME, _plain("time")),
)
_EXEMPLARS = (
    ("Exemplars.FilteredAttributes", f"Array({_MAP})", "arrayMap(t -> map(), exemplar_trace_ids)"),
    ("Exemplars.TimeUnix", f"Array({_TIME})", f"arrayMap(t -> {_plain('time')}, exemplar_trace_ids)"),
    ("Exemplars.Value", "Array(Float64)", "arrayMap(t -> nan, exemplar_trace_ids)"),
    ("Exemplars.SpanId", "Array(String)", "arrayMap(t -> '', exemplar_trace_ids)"),
    ("Exemplars.TraceId", "Array(String)", "exemplar_trace_ids"),
)
_FLAGS = ("Flags", "UInt32", "point_flags")
_TEMPORALITY = ("AggregationTemporality", "Int32",
                "multiIf(temporality = 'delta', 1, temporality = 'cumulative', 2, 0)")
_COUNT_SUM = (("Count", "UInt64", "count"), ("Sum", "Float64", "ifNull(sum, 0)"))
_MIN_MAX = (("Min", "Float64", "ifNull(min, 0)"), ("Max", "Float64", "ifNull(max, 0)"))


def _metric_view(name: str, kind: str, *rest: tuple[str, str, str]) -> View:
    return View(
        name=name,
        doc=f"`metric_points` of kind {kind} as the Collector ClickHouse exporter's `{name}` table.",
        query=f"SELECT {_cols(*_METRIC_HEAD, *rest)} FROM {{db}}.metric_points WHERE kind = '{kind}'",
        since=OTEL_VERSION,
    )


OTEL_VIEWS = (
    _metric_view("otel_metrics_gauge", "gauge", ("Value", "Float64", "value"), _FLAGS, *_EXEMPLARS),
    _metric_view("otel_metrics_sum", "sum", ("Value", "Float64", "value"), _FLAGS, *_EXEMPLARS, _TEMPORALITY,
                 ("IsMonotonic", "Bool", "is_monotonic")),
    _metric_view("otel_metrics_histogram", "histogram", *_COUNT_SUM,
                 ("BucketCounts", "Array(UInt64)", "bucket_counts"),
                 ("ExplicitBounds", "Array(Float64)", "bucket_bounds"), *_EXEMPLARS, _FLAGS, *_MIN_MAX,
                 _TEMPORALITY),
    _metric_view("otel_metrics_exponential_histogram", "exponential_histogram", *_COUNT_SUM,
                 ("Scale", "Int32", "exp_scale"), ("ZeroCount", "UInt64", "exp_zero_count"),
                 ("PositiveOffset", "Int32", "exp_positive_offset"),
                 ("PositiveBucketCounts", "Array(UInt64)", "exp_positive_counts"),
                 ("NegativeOffset", "Int32", "exp_negative_offset"),
                 ("NegativeBucketCounts", "Array(UInt64)", "exp_negative_counts"), *_EXEMPLARS, _FLAGS,
                 *_MIN_MAX, _TEMPORALITY),
    _metric_view("otel_metrics_summary", "summary", *_COUNT_SUM,
                 ("ValueAtQuantiles.Quantile", "Array(Float64)", "quantiles"),
                 ("ValueAtQuantiles.Value", "Array(Float64)", "quantile_values"), _FLAGS),
    View(
        name="otel_logs",
        doc="`log_records` as the Collector ClickHouse exporter's `otel_logs` table.",
        query="SELECT " + _cols(
            ("Timestamp", _TIME, _plain("time")),
            ("TimestampTime", "DateTime", "toDateTime(toUnixTimestamp(time))"),
            ("TraceId", "String", "trace_id"),
            ("SpanId", "String", "span_id"),
            ("TraceFlags", "UInt8", "bitAnd(record_flags, 255)"),
            ("SeverityText", "LowCardinality(String)", "severity_text"),
            ("SeverityNumber", "UInt8", "severity_number"),
            ("ServiceName", "LowCardinality(String)", "service_name"),
            ("Body", "String", "body"),
            ("ResourceSchemaUrl", "LowCardinality(String)", "''"),
            ("ResourceAttributes", _MAP, "resource_attributes"),
            ("ScopeSchemaUrl", "LowCardinality(String)", "''"),
            ("ScopeName", "String", "scope_name"),
            ("ScopeVersion", "LowCardinality(String)", "scope_version"),
            ("ScopeAttributes", _MAP, "map()"),
            ("LogAttributes", _MAP, "attributes"),
            ("EventName", "String", "event_name"),
        ) + " FROM {db}.log_records",
        since=OTEL_VERSION,
    ),
    View(
        name="otel_traces",
        doc="`spans` as the Collector ClickHouse exporter's `otel_traces` table (spans are kept with "
            "apm.store_spans on).",
        query="SELECT " + _cols(
            ("Timestamp", _TIME, _plain("time")),
            ("TraceId", "String", "trace_id"),
            ("SpanId", "String", "span_id"),
            ("ParentSpanId", "String", "parent_span_id"),
            ("TraceState", "String", "''"),
            ("SpanName", "LowCardinality(String)", "name"),
            ("SpanKind", "LowCardinality(String)", "concat('SPAN_KIND_', upper(kind))"),
            ("ServiceName", "LowCardinality(String)", "service_name"),
            ("ResourceAttributes", _MAP, "resource_attributes"),
            ("ScopeName", "String", "scope_name"),
            ("ScopeVersion", "String", "scope_version"),
            ("SpanAttributes", _MAP, "attributes"),
            ("Duration", "UInt64", "duration_ns"),
            ("StatusCode", "LowCardinality(String)", "concat('STATUS_CODE_', upper(status_code))"),
            ("StatusMessage", "String", "status_message"),
            ("Events.Timestamp", f"Array({_TIME})", "[]"),
            ("Events.Name", "Array(LowCardinality(String))", "[]"),
            ("Events.Attributes", f"Array({_MAP})", "[]"),
            ("Links.TraceId", "Array(String)", "[]"),
            ("Links.SpanId", "Array(String)", "[]"),
            ("Links.TraceState", "Array(String)", "[]"),
            ("Links.Attributes", f"Array({_MAP})", "[]"),
        ) + " FROM {db}.spans",
        since=OTEL_VERSION,
    ),
    View(
        name="otel_traces_trace_id_ts",
        doc="First and last span start per trace, as the exporter's `otel_traces_trace_id_ts` (Grafana's trace "
            "lookup reads it to bound the time range).",
        query=(f"SELECT CAST(trace_id AS String) AS TraceId, {_plain('min(time)')} AS Start, "
               f"{_plain('max(time)')} AS End FROM {{db}}.spans WHERE trace_id != '' GROUP BY trace_id"),
        since=OTEL_VERSION,
    ),
)
