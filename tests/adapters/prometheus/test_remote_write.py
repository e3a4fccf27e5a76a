from __future__ import annotations

import math
from pathlib import Path

import cramjam
import pytest

from telemetry_gateway.adapters.points import stale_marker
from telemetry_gateway.adapters.prometheus import remote_write
from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata, remote_write_to_arrow
from telemetry_gateway.adapters.attributes import AttributeSets
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import check_golden, plain_rows

TESTDATA = Path(__file__).parent / "testdata"


@pytest.fixture(autouse=True, params=["python walk", "compiled walk"])
def walk(request, monkeypatch):
    """Every test here runs on both walks; `test_native_remote_write` compares them directly."""
    if request.param == "compiled walk":
        assert remote_write.native_write_request is not None, "the compiled walker is not installed"
    monkeypatch.setattr(remote_write, "mismatches", 0)
    monkeypatch.setitem(WALK, "native", request.param == "compiled walk")
    yield
    assert remote_write.mismatches == 0


WALK = {"native": False}


def to_arrow(request, metadata: PrometheusMetadata, sets: AttributeSets):
    raw = request.SerializeToString() if WALK["native"] else None
    return remote_write_to_arrow(request, metadata, sets, raw=raw)


def recorded(name: str):
    return WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw((TESTDATA / name).read_bytes())))


def adapt(request, metadata: PrometheusMetadata | None = None, received_ns: int | None = None):
    if received_ns is None:
        received_ns = max((s.timestamp for ts in request.timeseries for s in ts.samples), default=0) * 1_000_000 + NS
    return finalized(to_arrow(request, metadata or PrometheusMetadata(), AttributeSets()),
                     context(received_ns, source_kind="remote_write"))


def by_name(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["metric_name"], []).append(row)
    return out


def test_recorded_node_exporter_request_matches_golden_rows():
    metadata = PrometheusMetadata()
    assert adapt(recorded("node_exporter_metadata.snappy"), metadata).table.num_rows == 0
    result = adapt(recorded("node_exporter_samples.snappy"), metadata)
    assert result.outcome.rejected_count == 0 and result.table.num_rows == 500
    rows = sorted(plain_rows(result.table), key=lambda r: (r["metric_name"], sorted(r["attributes"].items())))
    check_golden(rows, TESTDATA / "node_exporter_samples.expected.json")


def test_types_units_and_resource_follow_the_compatibility_rules():
    metadata = PrometheusMetadata()
    adapt(recorded("node_exporter_metadata.snappy"), metadata)
    rows = by_name(plain_rows(adapt(recorded("node_exporter_samples.snappy"), metadata).table))
    cpu = rows["node_cpu_seconds_total"][0]
    assert (cpu["kind"], cpu["temporality"], cpu["is_monotonic"], cpu["unit"]) == ("sum", "cumulative", True, "s")
    assert cpu["description"] == "Seconds the CPUs spent in each mode."
    assert set(cpu["attributes"]) == {"cpu", "mode"}
    assert cpu["service_name"] == "node" and set(cpu["resource_attributes"]) == {"service.name", "service.instance.id"}
    assert rows["go_goroutines"][0]["kind"] == "gauge" and rows["go_goroutines"][0]["temporality"] == "unspecified"
    quantiles = rows["go_gc_duration_seconds"]
    assert {r["kind"] for r in quantiles} == {"gauge"} and {r["attributes"]["quantile"] for r in quantiles} == {"0", "0.25", "0.5", "0.75", "1"}
    [count] = rows["go_gc_duration_seconds_count"]
    assert (count["kind"], count["is_monotonic"], count["unit"]) == ("sum", True, "s")
    assert rows["node_memory_MemTotal_bytes"][0]["unit"] == "By"


def test_without_metadata_the_name_decides():
    rows = by_name(plain_rows(adapt(recorded("node_exporter_samples.snappy")).table))
    assert rows["node_cpu_seconds_total"][0]["kind"] == "sum"  # _total
    assert rows["go_goroutines"][0]["kind"] == "gauge"
    assert rows["go_gc_duration_seconds"][0]["kind"] == "gauge"  # quantile series


def request_with(series: list[tuple[dict[bytes, bytes], list[tuple[float, int]]]]):
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in labels.items():
            ts.labels.append(Label(name=name, value=value).SerializeToString())
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    return request


def test_staleness_markers_duplicates_and_bad_series():
    now_ms = 1_800_000_000_000
    request = request_with([
        ({b"__name__": b"up", b"job": b"api"}, [(1.0, now_ms - 2000), (stale_marker(), now_ms - 1000), (1.0, now_ms - 2000)]),
        ({b"__name__": b"temp", b"job": b"api"}, [(math.nan, now_ms - 1000)]),
        ({b"job": b"api"}, [(1.0, now_ms)]),
        ({b"__name__": b"bad", b"host": b"\xff\xfe"}, [(1.0, now_ms)]),
    ])
    result = adapt(request, received_ns=now_ms * 1_000_000)
    rows = plain_rows(result.table)
    assert [(r["metric_name"], r["point_flags"], r["quality_flags"]) for r in rows] == [
        ("up", 0, []), ("up", 1, ["no_recorded_value"]), ("temp", 0, ["non_finite"]),
    ]
    assert result.outcome.reasons() == {
        "duplicate sample (same series and timestamp)": 1, "series without __name__": 1, "a label is not valid UTF-8": 1,
    }


def _series(request, name: str, value: float, ts_ms: int, **labels) -> None:
    series = request.timeseries.add()
    for key, val in (("__name__", name), ("job", "app"), *labels.items()):
        series.labels.append(Label(name=key.encode(), value=val.encode()).SerializeToString())
    series.samples.add(value=value, timestamp=ts_ms)


def test_family_parts_seen_before_their_metadata_are_retyped_once_it_arrives():
    """Prometheus sends metadata every 30 s, not with the first samples: `_count` and `_sum` seen
    before it fall back to gauges, and must become the family's parts as soon as it arrives."""
    metadata, sets = PrometheusMetadata(), AttributeSets()
    now_ms = 1_800_000_000_000

    def send(with_metadata: bool, ts_ms: int) -> dict[str, dict]:
        request = WriteRequest()
        _series(request, "rpc_seconds_count", 4, ts_ms)
        _series(request, "rpc_seconds_sum", 1.5, ts_ms)
        if with_metadata:
            request.metadata.add(type=5, metric_family_name=b"rpc_seconds", help=b"RPC latency.")
        result = finalized(to_arrow(request, metadata, sets), context(ts_ms * 1_000_000 + NS))
        return {r["metric_name"]: r for r in plain_rows(result.table)}

    before = send(False, now_ms)
    assert before["rpc_seconds_count"]["kind"] == "gauge"
    after = send(True, now_ms + 15_000)
    count, total = after["rpc_seconds_count"], after["rpc_seconds_sum"]
    assert (count["kind"], count["is_monotonic"], count["description"]) == ("sum", True, "RPC latency.")
    assert (total["kind"], total["is_monotonic"], total["unit"]) == ("sum", False, "s")
    later = send(False, now_ms + 30_000)  # metadata is remembered between requests
    assert later["rpc_seconds_count"]["kind"] == "sum"


def test_a_label_with_an_empty_value_is_absent():
    request = WriteRequest()
    _series(request, "node_disk_info", 1, 1_800_000_000_000, device="sda", model="")
    _series(request, "node_disk_info", 1, 1_800_000_000_000, device="sdb")
    rows = plain_rows(adapt(request).table)
    assert [r["attributes"] for r in rows] == [{"device": "sda"}, {"device": "sdb"}]


def test_a_bucket_or_quantile_series_types_its_family_parts_in_the_same_request_whatever_the_order():
    request = WriteRequest()
    _series(request, "rpc_seconds_count", 4, 1_800_000_000_000)
    _series(request, "rpc_seconds_sum", 1.5, 1_800_000_000_000)
    _series(request, "rpc_seconds_bucket", 4, 1_800_000_000_000, le="+Inf")
    _series(request, "gc_seconds_count", 9, 1_800_000_000_000)
    _series(request, "gc_seconds", 0.1, 1_800_000_000_000, quantile="0.5")
    metadata = PrometheusMetadata()
    rows = {r["metric_name"]: r for r in plain_rows(adapt(request, metadata).table)}
    assert {n: (r["kind"], r["is_monotonic"]) for n, r in rows.items()} == {
        "rpc_seconds_count": ("sum", True), "rpc_seconds_sum": ("sum", False), "rpc_seconds_bucket": ("sum", True),
        "gc_seconds_count": ("sum", True), "gc_seconds": ("gauge", False)}
    assert metadata.changed and set(metadata.families) == {"rpc_seconds", "gc_seconds"}


def test_a_series_sent_twice_in_a_request_keeps_one_sample_per_timestamp():
    now_ms = 1_800_000_000_000
    labels = {b"__name__": b"up", b"job": b"api"}
    request = request_with([(labels, [(1.0, now_ms)]), (labels, [(2.0, now_ms), (3.0, now_ms + 1000)])])
    result = adapt(request, received_ns=now_ms * 1_000_000 + NS)
    assert [r["value"] for r in plain_rows(result.table)] == [1.0, 3.0]
    assert result.outcome.reasons() == {"duplicate sample (same series and timestamp)": 1}
