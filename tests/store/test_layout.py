"""The narrow layout gives back exactly the rows a batch of points held, whatever their kinds."""

from __future__ import annotations

import json
from dataclasses import replace

import pyarrow as pa
import pytest

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.gateway.batch import new_batch_id
from telemetry_gateway.gateway.errors import StoreRejected
from telemetry_gateway.schema import POINTS
from telemetry_gateway.schema.ddl import create_table
from telemetry_gateway.schema.layout import BATCH_REF_SQL, LAYOUT_TABLES, PLAIN_TEXT_VERSION, batch_ref, split_points
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.store.testdata.make_v6_store import every_kind

NOW = 1_800_000_000 * NS


def every_kind_points(batch_id: str, at_ns: int = NOW - NS) -> pa.Table:
    ctx = context(NOW, batch_id=batch_id)
    return finalized(metrics_to_arrow(decode_request(every_kind(at_ns, "d")), AttributeSets()), ctx).table


def rows(store, sql: str) -> list[dict]:
    return [json.loads(line) for line in store.execute(sql, fmt="JSONEachRow").decode().splitlines()]


def test_the_view_gives_back_the_rows_a_wide_table_would_hold(store):
    db = store.database
    store.execute(create_table(db, replace(POINTS, name="wide"), version=6))
    new_style, old_style = new_batch_id(), "ab" * 16
    for token, batch_id, at in (("1" * 32, new_style, NOW - NS), ("2" * 32, old_style, NOW - 2 * NS)):
        points = every_kind_points(batch_id, at)
        store.insert_group(POINTS, points, token)
        store.insert(replace(POINTS, name="wide"), points, token)
    order = "ORDER BY series_id, time, kind"
    stored = rows(store, f"SELECT * FROM `{db}`.metric_points {order}")
    assert len(stored) == 12 and stored == rows(store, f"SELECT * FROM `{db}`.wide {order}")
    assert {r["batch_id"] for r in stored} == {new_style, old_style}
    by_kind = {r["table"]: int(r["n"]) for r in rows(store, "SELECT table, sum(rows) AS n FROM system.parts "
                                                          f"WHERE database = '{db}' AND active GROUP BY table")}
    assert (by_kind["samples"], by_kind["histogram_points"], by_kind["exp_histogram_points"],
            by_kind["summary_points"]) == (6, 2, 2, 2)


def test_select_star_through_the_read_path_shows_the_wide_tables_columns(store):
    """Labels and batch_id are ALIAS columns, the batch columns MATERIALIZED: the SQL API's SELECT * still
    gives every column of the wide table, and no other."""
    from telemetry_gateway.gateway.admin import run_read
    from telemetry_gateway.gateway.store.reads import ReadLimits

    batch_id = new_batch_id()
    store.insert_group(POINTS, every_kind_points(batch_id), "5" * 32)
    out = run_read(store, "SELECT * FROM metric_points ORDER BY kind", "JSONEachRow", ReadLimits(), "read-admin")
    shown = [json.loads(line) for line in out.decode().splitlines()]
    assert len(shown) == 6 and all(set(r) == {c.name for c in POINTS.columns} for r in shown)
    assert {r["batch_id"] for r in shown} == {batch_id}
    assert all(r["resource_attributes"] for r in shown)
    # JSON shows NaN as null: the value of the kinds that have none.
    assert {(r["kind"], r["value"] is None) for r in shown} == {
        ("gauge", False), ("sum", False), ("histogram", True), ("exponential_histogram", True), ("summary", True)}


def test_a_version_8_store_gets_plain_text_columns_and_keeps_its_rows(make_store):
    store = make_store()
    store.migrate(PLAIN_TEXT_VERSION - 1)
    db = store.database
    retyped = [(t.name, c.name) for t in LAYOUT_TABLES for c in t.columns if c.retyped == PLAIN_TEXT_VERSION]
    assert ("samples", "service_name") in retyped and ("samples", "tenant") not in retyped
    for table, column in retyped:  # as version 8 created them
        store.execute(f"ALTER TABLE `{db}`.`{table}` MODIFY COLUMN `{column}` LowCardinality(String) "
                      "SETTINGS mutations_sync = 1")
    store.insert_group(POINTS, every_kind_points(new_batch_id()), "d" * 32)
    order = "ORDER BY series_id, time, kind"
    before = rows(store, f"SELECT * FROM `{db}`.metric_points {order}")
    store.open()
    types = {(r["table"], r["name"]): r["type"] for r in rows(
        store, f"SELECT table, name, type FROM system.columns WHERE database = '{db}'")}
    assert {types[key] for key in retyped} == {"String"}
    assert types[("metric_points", "service_name")] == "LowCardinality(String)"
    assert len(before) == 6 and rows(store, f"SELECT * FROM `{db}`.metric_points {order}") == before


def test_a_replayed_group_is_stored_once_in_every_table(store):
    points = every_kind_points(new_batch_id())
    for _ in range(2):
        store.insert_group(POINTS, points, "c" * 32)
    assert rows(store, f"SELECT count() AS n FROM `{store.database}`.metric_points") == [{"n": 6}]
    assert rows(store, f"SELECT count() AS n FROM `{store.database}`.series") == [{"n": 6}]


def test_a_point_of_an_unknown_kind_is_refused_for_good(store):
    points = every_kind_points(new_batch_id())
    kinds = points.column("kind").to_pylist()
    odd = points.set_column(points.schema.get_field_index("kind"), "kind", pa.array(["sketch"] + kinds[1:]))
    with pytest.raises(StoreRejected, match="unknown kind 'sketch'"):
        store.insert_group(POINTS, odd, "d" * 32)


def test_batch_ids_are_16_hex_digits_and_increase():
    ids = [new_batch_id() for _ in range(10_000)]
    assert all(len(i) == 16 and int(i, 16) > 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_batch_ref_is_the_same_in_python_and_in_sql(store):
    ids = [new_batch_id(), "ab" * 16, "0123456789ABCDEF", "", "short", "zz" * 16, "0" * 16]
    got = store.engine.run(f"SELECT {BATCH_REF_SQL} FROM Python(rows)", fmt="TSV",
                           rows=pa.table({"batch_id": ids})).decode().split()
    assert [int(g) for g in got] == [batch_ref(i) for i in ids]


def test_split_keeps_every_point_once():
    points = every_kind_points(new_batch_id())
    parts = split_points(points)
    assert sorted(t.name for t, _ in parts) == ["exp_histogram_points", "histogram_points", "samples", "summary_points"]
    assert sum(p.num_rows for _, p in parts) == points.num_rows


def test_small_chunks_are_joined_before_chdb_reads_them():
    from telemetry_gateway.gateway.store.embedded import MIN_AVERAGE_CHUNK, few_chunks

    small = pa.concat_tables([pa.table({"v": list(range(10))})] * 50)
    assert few_chunks(small).column("v").num_chunks == 1
    assert few_chunks(small).column("v").to_pylist() == small.column("v").to_pylist()
    large = pa.concat_tables([pa.table({"v": list(range(MIN_AVERAGE_CHUNK))})] * 3)
    assert few_chunks(large) is large


def test_the_query_benchmark_judges_answers_the_same_up_to_summation_order():
    from loadtest.queries import same_answer

    old = b'"host-557",100.03786283615446,600\n"host-607",100.03775504908445,600\n'
    assert same_answer(old, old.replace(b"100.03775504908445", b"100.0377550490843"))  # threads summed otherwise
    assert not same_answer(old, old.replace(b"host-607", b"host-608"))
    assert not same_answer(old, old.replace(b"100.03775504908445", b"100.0377"))
    assert not same_answer(old, old + b'"host-507",1,600\n')
    assert same_answer(b"nan\n", b"nan\n") and not same_answer(b"nan\n", b"0\n")
