"""The series catalog on the real engine: one row per series and metadata version, across restarts and replays."""

from __future__ import annotations

import time

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import POINTS

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
    # The description arrives later (Prometheus metadata): each series gets a newer row.
    store.insert_group(POINTS, points("CPU in use."), "c" * 32)
    described = store.execute(f"SELECT DISTINCT description FROM {store.database}.series FINAL", fmt="TSV")
    assert described.decode().split() == ["CPU", "in", "use."]  # one distinct value: the newest
    assert len(catalog(store)) == 6
    # A replayed group (same token) writes its series rows once.
    store.series.known.clear()
    store.insert_group(POINTS, points("CPU in use."), "c" * 32)
    assert len(catalog(store)) == 6


def test_within_one_group_the_newest_metadata_of_a_series_wins(store):
    import pyarrow as pa

    store.insert_group(POINTS, pa.concat_tables([points(hosts=("a",)), points("Newer.", hosts=("a",))]), "e" * 32)
    assert [(r["host"], r["description"]) for r in catalog(store)] == [("a", "Newer.")]


def test_a_reopened_store_knows_its_series(make_store):
    first = make_store()
    first.open()
    first.insert_group(POINTS, points(), "a" * 32)
    again = make_store(first.database)  # as after a restart: a store object with an empty catalog
    again.open()
    assert len(again.series.known) == 3
    again.insert_group(POINTS, points(hosts=("a", "b", "c", "d")), "d" * 32)
    assert [r["host"] for r in catalog(again)] == ["a", "b", "c", "d"]
