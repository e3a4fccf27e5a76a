from __future__ import annotations

import json

import pyarrow as pa
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.gateway.errors import QueryRefused, StoreRejected, StoreUnavailable
from telemetry_gateway.gateway.store.base import classify
from telemetry_gateway.schema import LOGS, POINTS
from telemetry_gateway.schema.layout import KIND_TABLES
from telemetry_gateway.schema.migrations import SchemaTooNew, latest_version, live_tables
from tests.adapters.otlp.helpers import NS, context, finalized

NOW = 1_800_000_000 * NS


def rows_of(store, sql: str) -> list[dict]:
    out = store.query(store.guard_read(sql), "JSONEachRow").decode()
    return [json.loads(line) for line in out.splitlines() if line]


def points(values_and_attrs: list[tuple[float, list[tuple[str, str]]]], received_ns: int = NOW) -> pa.Table:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "api"
    metric = rm.scope_metrics.add().metrics.add(name="requests", unit="1")
    for i, (value, attrs) in enumerate(values_and_attrs):
        dp = metric.sum.data_points.add(time_unix_nano=received_ns - (10 - i) * NS, as_double=value)
        for key, text in attrs:
            dp.attributes.add(key=key).value.string_value = text
    raw = request.SerializeToString()
    return finalized(metrics_to_arrow(decode_request(raw), AttributeSets()), context(received_ns)).table


def test_migrations_create_every_table_from_the_schema(store):
    assert store.schema_version() == latest_version()
    # metric_points is read from the kind tables since version 7: it must keep the old table's columns and
    # types (its MATERIALIZED batch columns, left out of SELECT *, are how it reads the batch id).
    for table in live_tables() + (POINTS,):
        found = rows_of(store, f"SELECT name, type FROM system.columns WHERE database = '{store.database}' "
                               f"AND table = '{table.name}' AND default_kind != 'MATERIALIZED'")
        assert [(r["name"], r["type"]) for r in found] == [(c.name, c.type.clickhouse) for c in table.columns]


def test_opening_again_applies_nothing_new(store, make_store):
    again = make_store(store.database)
    again.open()
    assert rows_of(again, f"SELECT toString(count()) AS n FROM `{store.database}`.schema_migrations") == [{"n": str(latest_version())}]


def test_a_newer_schema_is_refused_with_a_clear_message(store, make_store):
    store.execute(f"INSERT INTO `{store.database}`.schema_migrations (version) VALUES ({latest_version() + 1})")
    with pytest.raises(SchemaTooNew, match=r"has schema version \d+, but this gateway knows versions up to \d+; upgrade the gateway"):
        make_store(store.database).open()


def test_inserted_rows_read_back_exactly(store):
    table = points([(5.0, [("route", "/a"), ("code", "200")]), (7.0, [("route", "/b")])])
    store.insert_group(POINTS, table, "a" * 32)
    rows = rows_of(store, f"SELECT metric_name, value, attributes, service_name, kind, temporality, toString(toUnixTimestamp64Nano(time)) AS t, tenant, region, source_kind FROM `{store.database}`.metric_points ORDER BY value")
    assert rows == [
        {"metric_name": "requests", "value": 5, "attributes": {"route": "/a", "code": "200"}, "service_name": "api",
         "kind": "sum", "temporality": "unspecified", "t": str(NOW - 10 * NS), "tenant": "default", "region": "default", "source_kind": "otlp"},
        {"metric_name": "requests", "value": 7, "attributes": {"route": "/b"}, "service_name": "api",
         "kind": "sum", "temporality": "unspecified", "t": str(NOW - 9 * NS), "tenant": "default", "region": "default", "source_kind": "otlp"},
    ]


def test_series_id_ignores_attribute_order_and_separates_series(store):
    table = points([(1.0, [("a", "1"), ("b", "2")]), (2.0, [("b", "2"), ("a", "1")]), (3.0, [("a", "1"), ("b", "3")])])
    store.insert_group(POINTS, table, "b" * 32)
    ids = [r["series_id"] for r in rows_of(store, f"SELECT toString(series_id) AS series_id FROM `{store.database}`.metric_points ORDER BY value")]
    assert ids[0] == ids[1] != ids[2]
    assert int(ids[0]) != 0


def test_a_repeated_token_is_stored_once(store):
    table = points([(1.0, [("k", "v")]), (2.0, [("k", "w")])])
    store.insert_group(POINTS, table, "c" * 32)
    store.insert_group(POINTS, table, "c" * 32)
    assert rows_of(store, f"SELECT toString(count()) AS n FROM `{store.database}`.metric_points") == [{"n": "2"}]
    store.insert_group(POINTS, table, "d" * 32)
    assert rows_of(store, f"SELECT toString(count()) AS n FROM `{store.database}`.metric_points") == [{"n": "4"}]


def test_a_batch_of_the_wrong_shape_is_rejected_permanently(store):
    wrong = pa.table({"time": pa.array(["not a time"])})
    with pytest.raises(StoreRejected):
        store.insert_group(POINTS, wrong, "e" * 32)


@pytest.mark.parametrize(
    "sql, message",
    [
        ("INSERT INTO t VALUES (1)", "only read statements"),
        ("DROP DATABASE system", "only read statements"),
        ("SELECT 1; DROP TABLE x", "not one valid SQL statement"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file"),
        ("SELECT 1 INTO OUTFILE '/tmp/gateway-test-out'", "INTO OUTFILE"),
        ("SELECT 1 SETTINGS readonly = 0", "a SETTINGS clause is not allowed"),
    ],
)
def test_the_read_path_refuses_anything_but_one_read(store, sql, message):
    with pytest.raises((QueryRefused, StoreRejected), match=message):
        store.query(store.guard_read(sql), "CSV")


def test_the_read_path_runs_reads(store):
    assert store.query(store.guard_read("select 40 + 2 -- comment"), "CSV") == b"42\n"
    assert b"metric_points" in store.query(store.guard_read(f"SHOW TABLES FROM `{store.database}`"), "CSV")


def test_retention_sets_a_ttl(make_store):
    s = make_store(retention_days=30)
    s.open()
    ddl = s.execute(f"SHOW CREATE TABLE `{s.database}`.{LOGS.name}").decode()
    assert "TTL toDateTime(time) + toIntervalDay(30)" in ddl


def test_retention_follows_the_config_at_each_start_back_to_none(make_store):
    s = make_store(retention_days=7)
    s.open()
    for days in (30, 0, 0, 5):
        s.retention_days = days
        s.open()
        for table in (LOGS, KIND_TABLES[0].table):
            ddl = s.execute(f"SHOW CREATE TABLE `{s.database}`.{table.name}").decode()
            assert ("TTL " in ddl) == bool(days), (days, ddl)
            assert not days or f"toIntervalDay({days})" in ddl


def test_errors_are_sorted_by_whether_a_retry_can_help():
    assert isinstance(classify(RuntimeError("Code: 117. DB::Exception: Incorrect data")), StoreRejected)
    assert isinstance(classify(RuntimeError("Code: 241. DB::Exception: Memory limit exceeded")), StoreUnavailable)
    assert isinstance(classify(ConnectionError("connection refused")), StoreUnavailable)


def test_an_older_store_is_migrated_forward(make_store):
    from telemetry_gateway.schema.migrations import bookkeeping_ddl, migration

    old = make_store()
    for statement in bookkeeping_ddl(old.database) + migration(old.database, 1).statements:
        old.execute(statement)
    old.execute(f"INSERT INTO `{old.database}`.schema_migrations (version) VALUES (1)")
    assert "exemplar_trace_ids" not in old.execute(f"SHOW CREATE TABLE `{old.database}`.metric_points").decode()
    old.open()
    assert old.schema_version() == latest_version() >= 2
    assert "exemplar_trace_ids" in old.execute(f"SHOW CREATE TABLE `{old.database}`.metric_points").decode()
    assert old.execute(f"SELECT engine FROM system.tables WHERE database = '{old.database}' AND name = 'metric_points'") \
        == b'"Merge"\n'


def test_prometheus_histograms_are_assembled_at_query_time(store):
    from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
    from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata, remote_write_to_arrow

    now_ms = NOW // 1_000_000 - 5000
    # Buckets arrive in two requests, out of order, as Prometheus shards them.
    for part in ((("0.5", 7.0), ("+Inf", 10.0)), (("0.1", 3.0),)):
        request = WriteRequest()
        for le, value in part:
            series = request.timeseries.add()
            for name, text in (("__name__", "req_seconds_bucket"), ("job", "api"), ("route", "/pay"), ("le", le)):
                series.labels.append(Label(name=name.encode(), value=text.encode()).SerializeToString())
            series.samples.add(value=value, timestamp=now_ms)
        table = finalized(remote_write_to_arrow(request, PrometheusMetadata(), AttributeSets()), context(NOW, source_kind="remote_write")).table
        store.insert_group(POINTS, table, uuid_token(le))
    rows = rows_of(store, f"SELECT metric_name, attributes, toString(le_bounds) AS le, cumulative_counts, service_name "
                          f"FROM `{store.database}`.prometheus_histograms")
    assert rows == [{"metric_name": "req_seconds", "attributes": {"route": "/pay"}, "le": "[0.1,0.5,inf]",
                     "cumulative_counts": [3, 7, 10], "service_name": "api"}]


def uuid_token(seed: str) -> str:
    import hashlib

    return hashlib.sha256(seed.encode()).hexdigest()[:32]
