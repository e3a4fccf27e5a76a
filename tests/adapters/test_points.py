"""`PointRows`: points of registered series (remote write, scrapes) are built with whole-column
operations; the rows must be those the general path builds, point by point."""

from __future__ import annotations

import math

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.points import PointRows, SeriesTable, stale_marker
from tests.adapters.otlp.helpers import context, finalized
from tests.adapters.otlp.test_native import plain

NOW_NS = 1_800_000_000_000 * 1_000_000


def fill(rows: PointRows) -> None:
    sets = rows.labels
    series = [
        rows.add_series(PointRows.series_info_of(
            name=name, kind=kind, monotonic=kind == "sum", temporality="cumulative" if kind == "sum" else "unspecified",
            unit=unit, description=f"{name} help", scope=scope,
            attributes_id=sets.id_of_labels(attributes), resource_id=sets.id_of_labels(resource)))
        for name, kind, unit, scope, attributes, resource in (
            ("up", "gauge", "", ("", ""), {}, {"service.name": "api", "service.instance.id": "a:1"}),
            ("http_requests_total", "sum", "1", ("scraper", "1.0"), {"code": "200"}, {"service.name": "api"}),
            ("http_requests_total", "sum", "1", ("scraper", "1.0"), {"code": "500"}, {}),
            ("temp_celsius", "gauge", "Cel", ("", ""), {"room": "b"}, {"service.name": "lab"}),
        )
    ]
    points = [(0, 1.0), (1, 5.0), (2, 0.0), (3, -3.5), (1, 6.0), (0, stale_marker()), (3, math.nan), (2, math.inf)]
    for i, (handle, value) in enumerate(points):
        stale = value != value and handle == 0
        rows.value(series[handle], NOW_NS - i * 10**9, math.nan if stale else value, stale)
    rows.value(series[3], -5, 1.0)  # a time before 1970: refused by the accept window, either way
    rows.flag(2, "cardinality_overflow")


def test_points_of_registered_series_give_the_same_rows_either_way():
    light, general = PointRows(AttributeSets()), PointRows(AttributeSets())
    fill(light)
    fill(general)
    general._materialize()  # as if `add` had been called: the point-by-point path
    assert not light.cols["time"] and general.cols["time"]
    ctx = context(NOW_NS + 10**9, source_kind="scrape")
    built, reference = finalized(light.finish(), ctx), finalized(general.finish(), ctx)
    assert built.outcome == reference.outcome and reference.outcome.rejected_count == 1
    assert built.table.schema == reference.table.schema
    assert plain(built.table.to_pylist()) == plain(reference.table.to_pylist())
    assert built.table.column("point_flags").to_pylist().count(1) == 1
    assert "cardinality_overflow" in built.table.column("quality_flags").to_pylist()[2]


def test_a_series_table_kept_across_requests_gives_the_same_rows_as_each_request_alone():
    """The walk cache's table: entries not yet in its columns, entries in them, and both in one request."""
    sets, table = AttributeSets(), SeriesTable()
    ctx = context(NOW_NS + 10**9, source_kind="remote_write")
    for request, new in enumerate((700, 700, 300)):
        light = PointRows(sets)
        light.series = table
        for i in range(new):
            light.add_series(PointRows.series_info_of(
                name=f"m{i % 7}", kind="sum" if i % 3 else "gauge", monotonic=i % 3 == 1, unit="s" if i % 2 else "",
                attributes_id=sets.id_of_labels({"i": str(len(table))}), resource_id=sets.id_of_labels({"r": str(i % 5)})))
        general = PointRows(sets)
        general.series.entries.extend(table.entries)
        handles = [h for h in range(0, len(table), 3)] + [len(table) - 1, 0]
        for rows in (light, general):
            for j, handle in enumerate(handles):
                rows.value(handle, NOW_NS - j * 10**6, float(j))
        general._materialize()
        built, reference = finalized(light.finish(), ctx), finalized(general.finish(), ctx)
        assert built.table.schema == reference.table.schema
        assert plain(built.table.to_pylist()) == plain(reference.table.to_pylist()), f"request {request}"
    assert len(table._numbers) == 1400  # the second request's growth was made columns; the third's not yet
