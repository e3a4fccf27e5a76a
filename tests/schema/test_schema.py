from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from telemetry_gateway.schema import LOGS, POINTS, TABLES, arrow_schema
from telemetry_gateway.schema.ddl import add_columns, create_table
from telemetry_gateway.schema.docs import render
from telemetry_gateway.schema.migrations import latest_version, migration, pending
from telemetry_gateway.schema.model import FLOAT, TIME_NS, Column, Table

ROOT = Path(__file__).resolve().parents[2]


def test_schema_reference_is_generated_from_the_model():
    assert (ROOT / "schema" / "SCHEMA.md").read_text() == render() + "\n", "run: python -m telemetry_gateway.schema.docs > schema/SCHEMA.md"


def test_arrow_schema_has_every_sent_column_in_order():
    for table in TABLES:
        schema = arrow_schema(table)
        assert schema.names == [c.name for c in table.columns]
    assert arrow_schema(POINTS).field("time").type == pa.timestamp("ns", tz="UTC")
    assert arrow_schema(POINTS).field("sum").nullable and not arrow_schema(POINTS).field("value").nullable
    assert arrow_schema(POINTS).field("series_id").type == pa.uint64()


def test_ddl_carries_types_codecs_order_and_dedup_window():
    ddl = create_table("telemetry", POINTS)
    assert "`time` DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1))" in ddl
    assert "`attributes` Map(LowCardinality(String), String) CODEC(ZSTD(1))" in ddl
    assert "ORDER BY (tenant, metric_name, series_id, time)" in ddl
    assert "non_replicated_deduplication_window = 10000" in ddl
    assert "ORDER BY (tenant, service_name, time)" in create_table("telemetry", LOGS)


def test_a_later_column_becomes_its_own_migration():
    later = Table(
        name="demo", doc="d", order_by="time", partition_by="toDate(time)", ttl_column="time",
        columns=(Column("time", TIME_NS, "t"), Column("extra", FLOAT, "added later", since=2)),
    )
    assert "`extra`" not in create_table("db", later, version=1)
    [statement] = add_columns("db", later, 2)
    assert statement.startswith("ALTER TABLE `db`.`demo` ADD COLUMN IF NOT EXISTS `extra` Float64")


def test_pending_migrations_run_in_order_from_the_applied_version():
    assert [m.version for m in pending("db", 0)] == list(range(1, latest_version() + 1))
    assert pending("db", latest_version()) == []
    assert all("CREATE TABLE" in s for s in migration("db", 1).statements)
