"""The unified time-series schema, defined once.

Everything else derives from the tables below: the Arrow schema every batch is
built in (`schema.arrow`), the ClickHouse DDL and migrations (`schema.ddl`,
`schema.migrations`) and the column reference (`schema/SCHEMA.md`, regenerated
by `python -m telemetry_gateway.schema.docs`).

A column's `since` is the migration that introduced it, and so is a table's.
Migration N creates the tables with `since == N` (with their columns up to N)
and adds the columns with `since == N` to older tables. So adding a column or
a table is a definition here with the next number.

Why this layout differs from the OpenTelemetry Collector's ClickHouse exporter
(otel_metrics_gauge/_sum/_histogram/... and otel_logs):

* One points table for every metric kind instead of one table per kind. SLO
  queries ask "this metric, this series, this window" and should not need to
  know whether a number came in as a gauge, a sum or a histogram. Columns a
  kind does not use stay at their default (0, empty array), which ClickHouse
  stores in a few bytes per granule after compression.
* `tenant` leads ORDER BY (the exporter's README advises it for shared tables):
  every read is per tenant, and authz filters on it.
* The sort key uses `series_id` (a hash of name + resource + attributes) rather
  than the whole `Attributes` map. Comparing maps is slow and makes the primary
  index large; a 64-bit id keeps all points of a series adjacent, which is what
  per-series range scans and the later quality checks need.
* `received_time`, `source_kind`, `source_id`, `batch_id` and `quality_flags`
  record provenance and trust, which the exporter has no place for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class ColumnType:
    clickhouse: str
    arrow: pa.DataType


TIME_NS = ColumnType("DateTime64(9, 'UTC')", pa.timestamp("ns", tz="UTC"))
LABEL = ColumnType("LowCardinality(String)", pa.string())
TEXT = ColumnType("String", pa.string())
FLOAT = ColumnType("Float64", pa.float64())
OPT_FLOAT = ColumnType("Nullable(Float64)", pa.float64())
UINT64 = ColumnType("UInt64", pa.uint64())
UINT32 = ColumnType("UInt32", pa.uint32())
UINT8 = ColumnType("UInt8", pa.uint8())
INT32 = ColumnType("Int32", pa.int32())
BOOL = ColumnType("Bool", pa.bool_())
FLOATS = ColumnType("Array(Float64)", pa.list_(pa.float64()))
COUNTS = ColumnType("Array(UInt64)", pa.list_(pa.uint64()))
ATTRS = ColumnType("Map(LowCardinality(String), String)", pa.map_(pa.string(), pa.string()))
FLAGS = ColumnType("Array(LowCardinality(String))", pa.list_(pa.string()))
STRINGS = ColumnType("Array(String)", pa.list_(pa.string()))


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    doc: str
    codec: str = ""
    since: int = 1
    # What a row that does not use the column holds, when not the type's zero.
    fill: object = None
    # The migration that changed the column's stored type (ALTER ... MODIFY COLUMN); 0 if never.
    retyped: int = 0
    # An ALIAS expression: the column is computed when read, never stored or sent.
    alias: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    order_by: str
    partition_by: str
    ttl_column: str
    indexes: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())
    # The migration that creates the table; its own columns then have since >= this.
    since: int = 1
    engine: str = "MergeTree"
    # The migration that moves the table's rows elsewhere and drops it; 0 while it is stored.
    retired: int = 0

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def sent_columns(self, version: int | None = None) -> list[Column]:
        """Columns a writer supplies, optionally as of a schema version."""
        return [c for c in self.columns if not c.alias and (version is None or c.since <= version)]


ZSTD = "CODEC(ZSTD(1))"
TIME_CODEC = "CODEC(Delta, ZSTD(1))"

# Columns every table carries: where a row came from and how far to trust it.
_PROVENANCE = (
    Column("received_time", TIME_NS, "When the gateway accepted the request.", TIME_CODEC),
    Column("service_name", LABEL, "Resource attribute service.name; `unknown_service` when absent."),
    Column("resource_attributes", ATTRS, "Resource attributes; non-string values as JSON text.", ZSTD),
    Column("scope_name", LABEL, "Instrumentation scope name."),
    Column("scope_version", LABEL, "Instrumentation scope version."),
    Column("attributes", ATTRS, "Point or record attributes; non-string values as JSON text.", ZSTD),
    Column("source_kind", LABEL, "otlp, remote_write, scrape, probe, apm, log or edge."),
    Column("source_id", TEXT, "Who sent it: transport and peer address, or an agent id.", ZSTD),
    Column("tenant", LABEL, "Owning tenant (`default` until tenants are configured)."),
    Column("region", LABEL, "Regional store the row was routed to."),
    Column("batch_id", TEXT, "Id of the accepted request the row came in; also the store's dedup token source.", ZSTD),
    Column("quality_flags", FLAGS, "Trust annotations: set at ingest (e.g. non_finite) and by quality stages."),
)

POINTS = Table(
    name="metric_points",
    doc=("One row per metric data point, for every metric kind: the shape of every batch of points, and of the "
         "`metric_points` view. Stored as this table until schema version 7, since then as `schema.layout` says."),
    columns=(
        Column("time", TIME_NS, "Event time of the point (time_unix_nano).", TIME_CODEC),
        Column("start_time", TIME_NS, "Start of the aggregation window for sums and histograms; 0 for gauges.", TIME_CODEC),
        Column("metric_name", LABEL, "Metric name."),
        Column("description", LABEL, "Metric description."),
        Column("unit", LABEL, "Unit, normalized to UCUM case-sensitive codes where known (ms, s, By, 1, %)."),
        Column("kind", LABEL, "gauge, sum, histogram, exponential_histogram or summary."),
        Column("temporality", LABEL, "delta, cumulative or unspecified (gauges and summaries)."),
        Column("is_monotonic", BOOL, "Sum monotonicity (true for counters)."),
        Column("value", FLOAT, "Gauge or sum value; NaN for other kinds.", "CODEC(Gorilla, ZSTD(1))", fill=math.nan),
        Column("count", UINT64, "Histogram, exponential histogram or summary count.", ZSTD),
        Column("sum", OPT_FLOAT, "Histogram or summary sum; NULL when not reported.", ZSTD),
        Column("min", OPT_FLOAT, "Histogram minimum; NULL when not reported.", ZSTD),
        Column("max", OPT_FLOAT, "Histogram maximum; NULL when not reported.", ZSTD),
        Column("bucket_bounds", FLOATS, "Explicit histogram upper bounds.", ZSTD),
        Column("bucket_counts", COUNTS, "Explicit histogram bucket counts (len(bucket_bounds) + 1).", ZSTD),
        Column("exp_scale", INT32, "Exponential histogram scale.", ZSTD),
        Column("exp_zero_count", UINT64, "Exponential histogram zero bucket count.", ZSTD),
        Column("exp_zero_threshold", FLOAT, "Exponential histogram zero threshold.", ZSTD),
        Column("exp_positive_offset", INT32, "Index of the first positive bucket.", ZSTD),
        Column("exp_positive_counts", COUNTS, "Positive bucket counts.", ZSTD),
        Column("exp_negative_offset", INT32, "Index of the first negative bucket.", ZSTD),
        Column("exp_negative_counts", COUNTS, "Negative bucket counts.", ZSTD),
        Column("quantiles", FLOATS, "Summary quantiles (0..1).", ZSTD),
        Column("quantile_values", FLOATS, "Summary values at those quantiles.", ZSTD),
        Column("point_flags", UINT32, "OTLP DataPointFlags (1 = no recorded value).", ZSTD),
        *_PROVENANCE,
        Column(
            "series_id",
            UINT64,
            "Series identity: a 64-bit id of tenant, metric name, resource and point attributes, "
            "independent of attribute order (`adapters.series`).",
        ),
        Column("exemplar_trace_ids", STRINGS, "Trace ids (hex) of example spans behind the point (APM series).",
               ZSTD, since=2),
    ),
    order_by="(tenant, metric_name, series_id, time)",
    partition_by="toDate(time)",
    ttl_column="time",
    indexes=(
        "INDEX idx_attr_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX idx_service service_name TYPE set(100) GRANULARITY 4",
    ),
    retired=7,
    reasons=(
        "ORDER BY (tenant, metric_name, series_id, time): every query is per tenant, "
        "SLO queries name a metric, and a series' points sit together in time order.",
        "PARTITION BY toDate(time): retention drops whole days, and a time-range query "
        "prunes partitions; the accept window keeps one insert from touching many days.",
        "A bloom filter on attribute values serves label filters that are not in the "
        "sort key. Unlike the Collector exporter there is none on keys: measured here it "
        "cost 0.4 CPU-us per inserted row (the values filter 0.8, the whole insert 2.6) "
        "and filtering on a key's mere presence is rare.",
        "Codecs: Delta for times, Gorilla for float values, ZSTD(1) elsewhere.",
    ),
)

LOGS = Table(
    name="log_records",
    doc="One row per log record.",
    columns=(
        Column("time", TIME_NS, "Event time; the observed or received time when the record has none.", TIME_CODEC),
        Column("observed_time", TIME_NS, "When the record was observed by the collection system.", TIME_CODEC),
        Column("severity_number", UINT8, "OTLP severity number (0 unspecified, 1-24)."),
        Column("severity_text", LABEL, "Severity text as sent."),
        Column("body", TEXT, "Body; non-string bodies as JSON text.", ZSTD),
        Column("event_name", LABEL, "OTLP event name."),
        Column("trace_id", TEXT, "Trace id, lowercase hex; empty when absent.", ZSTD),
        Column("span_id", TEXT, "Span id, lowercase hex; empty when absent.", ZSTD),
        Column("record_flags", UINT32, "OTLP LogRecordFlags.", ZSTD),
        *_PROVENANCE,
    ),
    order_by="(tenant, service_name, time)",
    partition_by="toDate(time)",
    ttl_column="time",
    indexes=(
        "INDEX idx_body body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1",
        "INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
        "INDEX idx_attr_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    ),
    reasons=(
        "ORDER BY (tenant, service_name, time): log reads are per tenant and service over a time range.",
        "tokenbf_v1 on body serves hasToken() searches, as in the Collector exporter.",
    ),
)

SPANS = Table(
    name="spans",
    doc="One row per span, kept only when apm.store_spans is on (RED series are always derived).",
    columns=(
        Column("time", TIME_NS, "Span start time.", TIME_CODEC, since=3),
        Column("end_time", TIME_NS, "Span end time.", TIME_CODEC, since=3),
        Column("duration_ns", UINT64, "end_time - time, in nanoseconds.", ZSTD, since=3),
        Column("trace_id", TEXT, "Trace id, lowercase hex.", ZSTD, since=3),
        Column("span_id", TEXT, "Span id, lowercase hex.", ZSTD, since=3),
        Column("parent_span_id", TEXT, "Parent span id, lowercase hex; empty for a root span.", ZSTD, since=3),
        Column("name", LABEL, "Span name.", since=3),
        Column("kind", LABEL, "internal, server, client, producer, consumer or unspecified.", since=3),
        Column("status_code", LABEL, "unset, ok or error.", since=3),
        Column("status_message", TEXT, "Status message.", ZSTD, since=3),
        *(Column(c.name, c.type, c.doc, c.codec, since=3) for c in _PROVENANCE),
    ),
    order_by="(tenant, service_name, time)",
    partition_by="toDate(time)",
    ttl_column="time",
    indexes=("INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",),
    reasons=("ORDER BY (tenant, service_name, time): span reads are per service over a time range; "
             "a bloom filter on trace_id finds one trace.",),
    since=3,
)

COUNT_MAP = ColumnType("Map(LowCardinality(String), UInt64)", pa.map_(pa.string(), pa.uint64()))

INGEST_LOG = Table(
    name="ingest_log",
    doc="One row per request (or syslog flush, or scrape): what arrived, what was kept, refused, dropped and derived.",
    columns=(
        Column("received_time", TIME_NS, "When the gateway accepted the request.", TIME_CODEC, since=5),
        Column("tenant", LABEL, "Owning tenant.", since=5),
        Column("region", LABEL, "Region the request's rows were routed to.", since=5),
        Column("format", LABEL, "Registered format: otlp_metrics, otlp_logs, otlp_traces, remote_write, zipkin, "
               "jsonlines, syslog, scrape or probes.", since=5),
        Column("source_kind", LABEL, "The rows' source_kind.", since=5),
        Column("source_id", TEXT, "The rows' source_id.", ZSTD, since=5),
        Column("transport", LABEL, "grpc, http, syslog-tcp, syslog-udp or poller.", since=5),
        Column("peer", TEXT, "Address the request came from.", ZSTD, since=5),
        Column("caller_subject", TEXT, "TLS client certificate or token subject; empty when none.", ZSTD, since=5),
        Column("agent_id", TEXT, "Edge agent that buffered the data; empty when none.", ZSTD, since=5),
        Column("sequence", UINT64, "The agent's sequence number for the request; 0 when none.", ZSTD, since=5),
        Column("batch_id", TEXT, "Batch id of the request's rows (`batch_id` in the data tables).", ZSTD, since=5),
        Column("items", UINT64, "Items the request held (points, records, spans, samples, messages).", since=5),
        Column("accepted", UINT64, "Items kept after the adapter and finalize stages.", since=5),
        Column("rejected", COUNT_MAP, "Items refused, by reason code.", since=5),
        Column("flagged", COUNT_MAP, "Kept items with a quality flag, by flag.", since=5),
        Column("dropped", COUNT_MAP, "Rows a processing stage dropped, by stage (e.g. cumulative_to_delta baselines).",
               since=5),
        Column("derived", COUNT_MAP, "Rows a stage derived, by `stage:table` (red:metric_points, ...).", since=5),
        Column("stored_rows", COUNT_MAP, "Rows handed to the sink, by table.", since=5),
    ),
    order_by="(tenant, received_time)",
    partition_by="toDate(received_time)",
    ttl_column="received_time",
    reasons=("ORDER BY (tenant, received_time): completeness checks read one tenant over a time range.",),
    since=5,
)

SERIES = Table(
    name="series",
    doc=("One row per metric series and version of its metadata: identity, attributes, name, kind, unit and "
         "description, written when the gateway first sees a series and when its metadata changes (a Prometheus "
         "description that arrives after the first samples). Read the newest with FINAL or argMax(..., updated)."),
    columns=(
        Column("tenant", LABEL, "Owning tenant.", since=6),
        Column("series_id", UINT64, "The series id of its points in `metric_points`.", since=6),
        Column("metric_name", LABEL, "Metric name.", since=6),
        Column("description", LABEL, "Metric description, as of this row.", since=6),
        Column("unit", LABEL, "Unit, as of this row.", since=6),
        Column("kind", LABEL, "gauge, sum, histogram, exponential_histogram or summary.", since=6),
        Column("temporality", LABEL, "delta, cumulative or unspecified.", since=6),
        Column("is_monotonic", BOOL, "Sum monotonicity.", since=6),
        Column("service_name", LABEL, "Resource attribute service.name.", since=6),
        Column("resource_attributes", ATTRS, "Resource attributes.", ZSTD, since=6),
        Column("scope_name", LABEL, "Instrumentation scope name.", since=6),
        Column("scope_version", LABEL, "Instrumentation scope version.", since=6),
        Column("attributes", ATTRS, "Point attributes.", ZSTD, since=6),
        Column("region", LABEL, "Regional store.", since=6),
        Column("seen_time", TIME_NS,
               "Event time of the point this row describes (its series' newest in the insert that wrote it).",
               TIME_CODEC, since=6),
        Column("updated", TIME_NS, "When the row was written; the newest per series wins.", TIME_CODEC, since=6),
    ),
    order_by="(tenant, metric_name, series_id)",
    partition_by="tuple()",
    ttl_column="",
    engine="ReplacingMergeTree(updated)",
    reasons=(
        "ReplacingMergeTree(updated): a series gets a new row only when its metadata changes, and merges keep "
        "the newest; readers that need exactly one row per series use FINAL.",
        "No TTL: a series written once stays described while its points are kept.",
    ),
    since=6,
)

AUDIT_LOG = Table(
    name="audit_log",
    doc=("Access decisions: one row per read, and write decisions aggregated per principal, tenant, region, "
         "format and result over a few seconds. Never a secret or payload content."),
    columns=(
        Column("time", TIME_NS, "When the decision (or the first of an aggregated row) was made.", TIME_CODEC,
               since=10),
        Column("tenant", LABEL, "Tenant decided for; empty when the caller was not authenticated.", since=10),
        Column("region", LABEL, "Region written or read; empty when none was reached.", since=10),
        Column("principal", TEXT, "Principal the policy authenticated; empty when none.", ZSTD, since=10),
        Column("action", LABEL, "write or read.", since=10),
        Column("result", LABEL, "allowed, partial (some rows refused by residency) or refused.", since=10),
        Column("reason", TEXT, "Why it was refused (or which rows were); empty when allowed.", ZSTD, since=10),
        Column("transport", LABEL, "grpc, http, syslog-tcp, admin, ...", since=10),
        Column("peer", TEXT, "Address of the caller (of the first request, when aggregated).", ZSTD, since=10),
        Column("format", LABEL, "For writes: the registered format; for reads: empty.", since=10),
        Column("requests", UINT64, "Requests this row counts.", since=10),
        Column("items", UINT64, "Items those requests held (writes) or result bytes (reads).", since=10),
        Column("refused_items", UINT64, "Items refused by residency rules.", since=10),
        Column("statement_hash", TEXT, "For reads: the first 16 hex digits of the statement's SHA-256.", ZSTD,
               since=10),
        Column("policy_version", LABEL, "Version of the policy that decided; empty without a policy.", since=10),
    ),
    order_by="(tenant, time)",
    partition_by="toDate(time)",
    ttl_column="time",
    reasons=("ORDER BY (tenant, time): audits read one tenant over a time range.",),
    since=10,
)

TABLES: tuple[Table, ...] = (POINTS, LOGS, SPANS, INGEST_LOG, SERIES, AUDIT_LOG)


@dataclass(frozen=True)
class View:
    """A read-only view over the tables; `{db}` in the query is the database."""

    name: str
    doc: str
    query: str
    since: int


PROMETHEUS_HISTOGRAMS = View(
    name="prometheus_histograms",
    doc=(
        "Classic Prometheus histograms assembled at query time from their `_bucket{le}` series "
        "(stored as components because remote write spreads one histogram over many requests): "
        "one row per series and timestamp, with the sorted `le` bounds and cumulative counts."
    ),
    # Inner aliases differ from column names: ClickHouse resolves a name to an alias first.
    query=(
        "SELECT tenant, region, service_name, resource_attributes, family AS metric_name, labels AS attributes, "
        "time, le_bounds, cumulative_counts FROM ("
        "SELECT tenant, region, service_name, resource_attributes, "
        "substring(metric_name, 1, length(metric_name) - 7) AS family, "
        "mapFilter((k, v) -> k != 'le', attributes) AS labels, time, "
        "arraySort(groupArray(toFloat64(attributes['le']))) AS le_bounds, "
        "arrayMap(x -> x.2, arraySort(groupArray((toFloat64(attributes['le']), value)))) AS cumulative_counts "
        "FROM {db}.metric_points "
        "WHERE endsWith(metric_name, '_bucket') AND mapContains(attributes, 'le') AND point_flags = 0 "
        "GROUP BY tenant, region, service_name, resource_attributes, family, labels, time)"
    ),
    since=4,
)

VIEWS: tuple[View, ...] = (PROMETHEUS_HISTOGRAMS,)
