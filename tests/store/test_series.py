"""The series catalog on the real engine: one row per series and metadata version, across restarts and replays."""

from __future__ import annotations

import time

import pytest

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AcceptWindow, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import POINTS

NS = 1_000_000_000
FINALIZER = Finalizer(AcceptWindow())


def points(description: str = "", hosts=("a", "b", "c"), per_series: int = 2, scope=("", "")):
    rows = PointRows(AttributeSets())
    now = time.time_ns()
    for host in hosts:
        for i in range(per_series):
            rows.add(name="cpu.usage", kind="gauge", time_ns=now - (10 - i) * NS, value=float(i), unit="1",
                     description=description, attributes={"host": host}, resource={"service.name": "svc"},
                     scope=scope)
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


def test_metric_points_show_each_series_newest_labels(store):
    """Labels come from `series_labels`, fed by every `series` row: the newer row of a series wins, for all
    its points, as `series FINAL` says."""
    store.insert_group(POINTS, points(hosts=("a",), scope=("lib", "1")), "a" * 32)
    store.insert_group(POINTS, points("Now described.", hosts=("a", "b"), scope=("lib", "2")), "b" * 32)
    shown = store.execute(f"SELECT attributes['host'], scope_version, count() FROM {store.database}.metric_points "
                          "GROUP BY ALL ORDER BY ALL", fmt="TSV")
    assert shown.decode().splitlines() == ["a\t2\t4", "b\t2\t2"]
    newest = store.execute(f"SELECT attributes['host'], scope_version FROM {store.database}.series FINAL "
                           "ORDER BY ALL", fmt="TSV")
    assert newest.decode().splitlines() == ["a\t2", "b\t2"]


def test_a_reopened_store_knows_its_series(make_store):
    first = make_store()
    first.open()
    first.insert_group(POINTS, points(), "a" * 32)
    again = make_store(first.database)  # as after a restart: a store object with an empty catalog
    again.open()
    assert len(again.series.known) == 3
    again.insert_group(POINTS, points(hosts=("a", "b", "c", "d")), "d" * 32)
    assert [r["host"] for r in catalog(again)] == ["a", "b", "c", "d"]


def test_the_catalog_judges_each_series_by_its_own_newest_metadata(monkeypatch):
    """Without a store: the digests of a group's rows are the ones `prime` computes from stored
    rows, with mixed metrics, a null and combined codes renumbered on the way."""
    import pyarrow as pa

    from telemetry_gateway.gateway.store import series as catalog_module

    monkeypatch.setattr(catalog_module, "_CODE_BOUND", 4)  # renumber after every column
    ids = pa.array([5, 6, 7, 5, 8], pa.uint64())
    meta = {"metric_name": ["a", "b", "b", "a", "c"], "description": ["", "", "", "new", None],
            "unit": ["1", "1", "1", "1", "By"], "kind": ["sum", "sum", "sum", "sum", "gauge"],
            "temporality": ["cumulative"] * 4 + ["unspecified"], "is_monotonic": [True, True, True, True, False]}
    rows = pa.table({"series_id": ids, **meta})
    newest = {5: 3, 6: 1, 7: 2, 8: 4}
    stored = [(sid, *(meta[name][row] for name in catalog_module.METADATA)) for sid, row in newest.items()]
    digests = catalog_module._metadata_digests(rows.select(list(catalog_module.METADATA)))
    assert digests.tolist() == [hash(tuple(meta[n][r] for n in catalog_module.METADATA)) for r in range(5)]
    unique, last = catalog_module._last_of_each(rows.column("series_id"))
    assert dict(zip(unique.tolist(), last.tolist())) == newest


def test_a_primed_catalog_writes_only_the_series_whose_metadata_the_store_lacks():
    from telemetry_gateway.gateway.store.series import METADATA, SeriesCatalog

    group = points("Now described.", hosts=("a", "b", "c"))
    as_stored = group.select(["series_id", *METADATA]).to_pylist()
    rows = {r["series_id"]: tuple(r.values()) for r in as_stored}  # one per series, as `series FINAL` holds them
    cat = SeriesCatalog()
    cat.prime(list(rows.values()))
    assert cat.changes(group) is None
    older = next(iter(rows))
    cat.prime([(older, "cpu.usage", "", "1", "gauge", "unspecified", False)])
    series_rows, fresh = cat.changes(group)
    assert list(fresh) == [older] and series_rows.column("series_id").to_pylist() == [older]


def _drop_points_of(store, host: str) -> None:
    """As the retention TTL leaves a series that stopped: its points gone, its labels still described."""
    db = store.database
    (series_id,) = store.execute(f"SELECT DISTINCT series_id FROM {db}.series WHERE attributes['host'] = '{host}'",
                                 fmt="TSV").decode().split()
    store.execute(f"ALTER TABLE {db}.samples DELETE WHERE series_id = {series_id} SETTINGS mutations_sync = 1")


def _labelled(store, keys: str) -> list[str]:
    """The hosts `series_labels` holds labels for, of the series `keys` (tenant, metric_name, series_id rows)."""
    db = store.database
    out = store.execute(f"SELECT joinGet('{db}.series_labels', 'attributes', k.1, k.2, k.3)['host'] AS h "
                        f"FROM (SELECT arrayJoin({keys}) AS k) WHERE h != '' ORDER BY h", fmt="TSV")
    return out.decode().split()


def _keys(store) -> str:
    out = store.execute(f"SELECT groupArray((tenant, metric_name, series_id)) FROM {store.database}.series", fmt="TSV")
    return out.decode().strip()


@pytest.mark.parametrize("retention_days", [0, 1])
def test_series_whose_points_all_expired_are_forgotten_and_described_again_when_they_return(make_store,
                                                                                              retention_days):
    store = make_store(retention_days=retention_days)
    store.open()
    store.insert_group(POINTS, points(hosts=("gone", "stays")), "a" * 32)
    keys = _keys(store)
    _drop_points_of(store, "gone")
    store._next_forget = 0  # as FORGET_EVERY_S after the last time
    store.insert_group(POINTS, points(hosts=("stays",)), "b" * 32)
    if not retention_days:  # nothing expires: nothing is forgotten
        assert _labelled(store, keys) == ["gone", "stays"]
        return
    assert _labelled(store, keys) == ["stays"]
    assert [r["host"] for r in catalog(store)] == ["stays"]
    assert len(store.series.known) == 1
    # It comes back: described again, its points labelled.
    store.insert_group(POINTS, points(hosts=("gone",)), "c" * 32)
    assert _labelled(store, keys) == ["gone", "stays"]
    shown = store.execute(f"SELECT attributes['host'] AS h, count() FROM {store.database}.metric_points "
                          "GROUP BY h ORDER BY h", fmt="TSV")
    assert shown.decode().splitlines() == ["gone\t2", "stays\t4"]
