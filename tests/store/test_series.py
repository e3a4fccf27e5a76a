"""The series catalog on the real engine: one row per series and metadata version, across restarts and replays."""

from __future__ import annotations

import time

import pyarrow as pa

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.store import series as catalog_module
from telemetry_gateway.gateway.store.series import SeriesCatalog
from telemetry_gateway.schema import POINTS, layout
from telemetry_gateway.schema.layout import META_SQL, meta_key, meta_keys

NS = 1_000_000_000
FINALIZER = Finalizer(AcceptWindow())


def points(description: str = "", hosts=("a", "b", "c"), per_series: int = 2):
    rows = PointRows(AttributeSets())
    now = time.time_ns()
    for host in hosts:
        for i in range(per_series):
            rows.add(name="cpu.usage", kind="gauge", time_ns=now - (10 - i) * NS, value=float(i), unit="1",
                     description=description, attributes={"host": host}, resource={"service.name": "svc"})
    provenance = Provenance("otlp_metrics", "otlp", "t", Caller("local"), "b" * 32, now, region="default")
    return FINALIZER.finish(rows.finish(), provenance, Outcome())


def catalog(store) -> list[dict]:
    import json

    out = store.execute(f"SELECT attributes['host'] AS host, description, toString(series_id) AS id FROM "
                        f"{store.database}.series ORDER BY host, updated", fmt="JSONEachRow")
    return [json.loads(line) for line in out.decode().splitlines()]


def test_series_are_written_once_then_again_only_when_their_metadata_changes(store):
    store.insert_group(POINTS, points(), "a" * 32)
    store.insert_group(POINTS, points(), "b" * 32)
    first = catalog(store)
    assert [(r["host"], r["description"]) for r in first] == [("a", ""), ("b", ""), ("c", "")]
    ids = {r["id"] for r in first}
    stored = store.execute(f"SELECT toString(series_id) FROM {store.database}.metric_points", fmt="TSV")
    assert set(stored.decode().split()) == ids
    # The description arrives later (Prometheus metadata): each series gets a row for the new version,
    # and the points keep the description they came with.
    store.insert_group(POINTS, points("CPU in use."), "c" * 32)
    assert len(catalog(store)) == 6
    by_point = store.execute(f"SELECT description, count() FROM {store.database}.metric_points "
                             "GROUP BY description ORDER BY description", fmt="TSV")
    assert by_point.decode().splitlines() == ["\t12", "CPU in use.\t6"]
    # A replayed group (same token) writes its series rows once.
    store.series.known.clear()
    store.insert_group(POINTS, points("CPU in use."), "c" * 32)
    assert len(catalog(store)) == 6


def test_within_one_group_each_metadata_version_of_a_series_gets_its_row(store):
    import pyarrow as pa

    store.insert_group(POINTS, pa.concat_tables([points(hosts=("a",)), points("Newer.", hosts=("a",))]), "e" * 32)
    assert [(r["host"], r["description"]) for r in catalog(store)] == [("a", ""), ("a", "Newer.")]
    assert store.series.known == {int(catalog(store)[0]["id"]): meta_key("Newer.", "1", "gauge", "unspecified", False)}
    by_point = store.execute(f"SELECT description, count() FROM {store.database}.metric_points "
                             "GROUP BY description ORDER BY description", fmt="TSV")
    assert by_point.decode().splitlines() == ["\t2", "Newer.\t2"]


def test_the_engine_keys_metadata_as_the_gateway_does(store):
    """`META_SQL` (the migration to version 11, on stored rows) and `meta_keys` (every insert) agree."""
    group = pa.concat_tables([points(), points("Ünïcode, 'quoted', \\ and a tab\t.", hosts=("a",))])
    store.insert_group(POINTS, group, "f" * 32)
    expected = set(meta_keys(group).to_pylist())
    assert len(expected) == 2
    stored = store.execute(f"SELECT DISTINCT toString({META_SQL}) FROM (SELECT * FROM {store.database}.series)",
                           fmt="TSV")
    assert {int(k) for k in stored.decode().split()} == expected


def test_metadata_keys_are_computed_per_distinct_metadata(monkeypatch):
    """Without a store: each row's key is `meta_key` of its own metadata, with a null and the
    combined codes renumbered on the way."""
    monkeypatch.setattr(layout, "_CODE_BOUND", 4)  # renumber after every column
    meta = {"description": ["", "", "", "new", None], "unit": ["1", "1", "1", "1", "By"],
            "kind": ["sum", "sum", "sum", "sum", "gauge"], "temporality": ["cumulative"] * 4 + ["unspecified"],
            "is_monotonic": [True, True, True, True, False]}
    keys = layout.meta_keys(pa.table(meta)).to_pylist()
    assert keys == [meta_key(*(meta[n][r] for n in layout.META_COLUMNS)) for r in range(5)]
    assert len(set(keys)) == 3 and keys[4] == meta_key("", "By", "gauge", "unspecified", False)


def test_the_last_row_of_each_series_version_describes_it():
    ids = pa.array([5, 6, 5, 5, 8, 6], pa.uint64())
    metas = pa.array([1, 1, 2, 1, 1, 1], pa.uint64())
    last = catalog_module._last_of_each(pa.chunked_array([ids]), pa.chunked_array([metas]))
    assert sorted(last.tolist()) == [2, 3, 4, 5]


def test_a_primed_catalog_writes_only_the_versions_the_store_lacks():
    group = points("Now described.", hosts=("a", "b", "c"))
    group = group.append_column("meta", meta_keys(group))
    stored = {r["series_id"]: r["meta"] for r in group.select(["series_id", "meta"]).to_pylist()}
    cat = SeriesCatalog()
    cat.prime(list(stored.items()))
    assert cat.changes(group) is None
    older = next(iter(stored))
    cat.prime([(older, meta_key("", "1", "gauge", "unspecified", False))])
    series_rows, fresh = cat.changes(group)
    assert fresh == {older: stored[older]} and series_rows.column("series_id").to_pylist() == [older]
    assert series_rows.column("meta").to_pylist() == [stored[older]]
