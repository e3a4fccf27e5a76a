from __future__ import annotations

import pytest

from telemetry_gateway.adapters.normalize import CumulativeToDelta, Names, ServiceCatalog, convert_units
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.points import PointRows
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import plain_rows

NOW = 1_800_000_000 * NS


def table(points: list[dict]):
    rows = PointRows(AttributeSets())
    for p in points:
        rows.add(**{"time_ns": NOW - NS, "kind": "gauge", "attributes": {}, "resource": {"service.name": "api"}, **p})
    return finalized(rows.finish(), context(NOW)).table


def test_units_are_rescaled_to_base_units_and_flagged():
    t = table([
        {"name": "latency", "unit": "ms", "value": 250.0},
        {"name": "size", "unit": "kBy", "value": 3.0},
        {"name": "cpu", "unit": "%", "value": 42.0},
        {"name": "h", "unit": "ms", "kind": "histogram", "count": 2, "sum_": 30.0, "min_": 10.0, "max_": 20.0,
         "bounds": [5.0, 50.0], "bucket_counts": [0, 2, 0]},
        {"name": "plain", "unit": "s", "value": 1.5},
    ])
    rows = {r["metric_name"]: r for r in plain_rows(convert_units(t))}
    assert (rows["latency"]["unit"], rows["latency"]["value"]) == ("s", 0.25)
    assert (rows["size"]["unit"], rows["size"]["value"]) == ("By", 3000.0)
    assert (rows["cpu"]["unit"], rows["cpu"]["value"]) == ("1", pytest.approx(0.42))
    h = rows["h"]
    assert (h["unit"], h["sum"], h["min"], h["max"], h["bucket_bounds"]) == ("s", 0.03, 0.01, 0.02, [0.005, 0.05])
    assert h["bucket_counts"] == [0, 2, 0]
    assert rows["latency"]["quality_flags"] == ["unit_converted"] and rows["plain"]["quality_flags"] == []
    assert rows["plain"]["value"] == 1.5


def test_names_follow_semantic_conventions_and_config():
    names = Names(metrics={"legacy.latency": "app.latency"}, attributes={"env": "deployment.environment.name"})
    assert names.metric("http.server.duration") == "http.server.request.duration"
    assert names.metric("legacy.latency") == "app.latency"
    assert names.keys(("http.method", "http.status_code", "x"), ("GET", "200", "y")) == (
        ("http.request.method", "http.response.status_code", "x"), ("GET", "200", "y"))
    # Both spellings present: the current one wins.
    assert names.keys(("http.request.method", "http.method"), ("POST", "GET")) == (("http.request.method",), ("POST",))


def counter(value: float, seconds: int, start: int = NOW - 100 * NS):
    return {"name": "requests_total", "kind": "sum", "temporality": "cumulative", "monotonic": True,
            "value": value, "time_ns": NOW - (100 - seconds) * NS, "start_ns": start}


def test_cumulative_to_delta_with_counter_resets():
    convert = CumulativeToDelta(["requests_*"])
    first = plain_rows(convert.apply(table([counter(10, 1), counter(15, 2)])))
    assert [(r["value"], r["temporality"]) for r in first] == [(5.0, "delta")]  # the first point is the baseline
    later = plain_rows(convert.apply(table([counter(3, 3), counter(9, 4)])))
    assert [(r["value"], r["quality_flags"]) for r in later] == [(3.0, ["counter_reset"]), (6.0, [])]
    assert later[1]["start_time"] == NOW - 97 * NS
    untouched = plain_rows(CumulativeToDelta(["other*"]).apply(table([counter(10, 1)])))
    assert [(r["value"], r["temporality"]) for r in untouched] == [(10.0, "cumulative")]


def test_service_catalog_enriches_resources(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("services:\n  api: {team: payments, tier: 1, environment: prod, runbook: https://x}\n")
    rows = plain_rows(ServiceCatalog(path).enrich(table([{"name": "m", "value": 1.0}])))
    assert rows[0]["resource_attributes"] == {
        "service.name": "api", "service.owner.team": "payments", "service.tier": "1",
        "deployment.environment.name": "prod", "service.runbook": "https://x"}
    series_before = plain_rows(table([{"name": "m", "value": 1.0}]))[0]["series_id"]
    assert rows[0]["series_id"] == series_before  # enrichment does not change identity


def test_the_attribute_set_registry_is_bounded_in_bytes_as_well_as_in_sets():
    from telemetry_gateway.adapters.attributes import AttributeSets

    sets = AttributeSets(max_bytes=1 << 20)
    first = sets.generation
    for n in range(100):
        sets.begin()
        sets.id_of_labels({"k": f"{n}" + "x" * 20_000})
    # 100 sets of 20 kB pass 1 MiB: the registry was started afresh between requests.
    assert sets.generation > first and sets.bytes < 1 << 20
