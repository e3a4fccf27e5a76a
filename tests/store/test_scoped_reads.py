"""Reads scoped by the access policy, on the real engine: a reader sees its tenants' rows of its role's
tables, whatever SQL it sends; every way out it tries is refused by the parse-tree check, and rows of
other tenants are filtered by ClickHouse itself (`additional_table_filters`)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from telemetry_gateway.gateway.admin import run_read
from telemetry_gateway.gateway.errors import QueryRefused
from telemetry_gateway.gateway.store.reads import ReadLimits, ReadScope
from telemetry_gateway.schema import POINTS
from tests.store.test_store import points

LIMITS = ReadLimits(timeout_s=10, max_memory_bytes=256 << 20, max_result_rows=10_000, max_result_bytes=8 << 20)
ACME = ReadScope(("acme",), validated_only=False)
VALIDATED = ReadScope(("acme",), validated_only=True)


@pytest.fixture
def two_tenants(make_store):
    """acme: two unflagged points and two flagged; globex: two; another region's store: one."""
    store, other_region = make_store(), make_store()
    store.open()
    other_region.open()
    for tenant, flags, token in (("acme", [], "a"), ("acme", ["suspect"], "b"), ("globex", [], "c")):
        rows = points([(1.0, [("k", tenant)]), (2.0, [("k", tenant)])])
        rows = _set(_set(rows, "tenant", tenant), "quality_flags", flags)
        store.insert_group(POINTS, rows, token * 32)
    other_region.insert_group(POINTS, points([(9.0, [])]), "d" * 32)
    return store, other_region


def _set(rows: pa.Table, column: str, value) -> pa.Table:
    field = rows.schema.field(column)
    return rows.set_column(rows.schema.get_field_index(column), field, pa.array([value] * rows.num_rows, field.type))


def read(store, sql: str, scope: ReadScope = ACME) -> str:
    return run_read(store, sql, "TSV", LIMITS, "read-scoped", scope).decode()


def test_a_scoped_reader_sees_only_its_tenants_rows_whatever_it_filters_on(two_tenants):
    store, _ = two_tenants
    assert read(store, "SELECT count() FROM metric_points") == "4\n"
    assert read(store, "SELECT count() FROM metric_points WHERE tenant = 'globex'") == "0\n"
    assert read(store, "SELECT count() FROM metric_points WHERE tenant != 'acme' OR 1 = 1") == "4\n"
    assert read(store, "SELECT DISTINCT tenant FROM samples") == "acme\n"
    assert read(store, "SELECT count() FROM series FINAL WHERE attributes['k'] = 'globex'") == "0\n"
    assert read(store, f"SELECT count() FROM {store.database}.samples") == "4\n"
    assert read(store, "SELECT count() FROM (SELECT * FROM metric_points) WHERE tenant = 'globex'") == "0\n"
    # Labels are looked up per row (joinGet in an ALIAS column), after the tenant filter.
    assert read(store, "SELECT DISTINCT attributes['k'] FROM metric_points") == "acme\n"
    assert read(store, "SELECT count() FROM metric_points WHERE attributes['k'] = 'globex'") == "0\n"
    assert read(store, "SELECT count() FROM samples AS a JOIN series AS b USING (tenant, series_id)") == "4\n"
    # The admin reads every tenant.
    assert run_read(store, "SELECT count() FROM metric_points", "TSV", LIMITS, "read-admin") == b"6\n"


def test_read_validated_sees_only_unflagged_rows_of_the_validated_views(two_tenants):
    store, _ = two_tenants
    assert read(store, "SELECT count() FROM metric_points", VALIDATED) == "2\n"
    with pytest.raises(QueryRefused, match="table samples is not readable"):
        read(store, "SELECT count() FROM samples", VALIDATED)


ESCAPES = {
    "SELECT * FROM system.tables": "table system.tables is not readable",
    "SELECT name FROM system.columns WHERE table = 'samples'": "table system.columns",
    "SELECT 1 WHERE 'x' IN system.one": "table system.one",
    "SELECT 1 WHERE 'x' NOT IN {other}.samples": "is not readable",
    "SELECT count() FROM {other}.samples": "is not readable",
    "SELECT * FROM samples UNION ALL SELECT * FROM {other}.samples": "is not readable",
    "WITH samples AS (SELECT * FROM system.tables) SELECT * FROM samples": "table system.tables",
    "WITH s AS (SELECT * FROM samples) SELECT * FROM s": "table s is not readable",
    "SELECT * FROM points_by_kind": "table points_by_kind is not readable",
    "SELECT * FROM series_labels": "table series_labels is not readable",
    "SELECT * FROM metric_points JOIN series_labels USING (tenant, metric_name, series_id)":
        "table series_labels is not readable",
    "SELECT joinGet('series_labels', 'attributes', 'globex', 'requests', 1)": "function joinGet() is not allowed",
    "SELECT * FROM otel_logs": "table otel_logs is not readable",
    "SELECT * FROM schema_migrations": "table schema_migrations",
    "SELECT * FROM merge(currentDatabase(), '^samples$')": "table function merge() is not allowed",
    "SELECT * FROM view(SELECT * FROM system.tables)": "table system.tables",
    "SELECT joinGet('x', 'y', 1)": "function joinGet() is not allowed",
    "SELECT dictGet('x', 'y', 1)": "function dictGet() is not allowed",
    "SHOW TABLES": "only SELECT",
    "DESCRIBE samples": "only SELECT",
    "EXPLAIN SELECT * FROM system.tables": "only SELECT",
    "SELECT * FROM samples SETTINGS additional_table_filters = {{}}": "a SETTINGS clause is not allowed",
    "SELECT (SELECT count() FROM system.processes)": "table system.processes",
}


@pytest.mark.parametrize("statement", sorted(ESCAPES))
def test_every_way_out_of_the_scope_is_refused(two_tenants, statement):
    store, other = two_tenants
    with pytest.raises(QueryRefused) as info:
        read(store, statement.format(other=other.database))
    assert ESCAPES[statement] in str(info.value)


def test_tenant_names_are_quoted_into_the_filter(two_tenants):
    store, _ = two_tenants
    hostile = ReadScope(("x') OR 1 = 1 OR tenant IN ('y",), validated_only=False)
    assert read(store, "SELECT count() FROM samples", hostile) == "0\n"
