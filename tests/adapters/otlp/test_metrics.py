from __future__ import annotations

import math

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.otlp.metrics import decode_request, metrics_to_arrow
from telemetry_gateway.schema import POINTS, arrow_schema
from tests.adapters.otlp.helpers import NS, TESTDATA, context, finalized
from tests.rows import check_golden, plain_rows

NOW = 1_800_000_000 * NS


def sdk_request():
    return decode_request((TESTDATA / "sdk_metrics.binpb").read_bytes())


def adapt(request, received_ns: int = NOW, sets: AttributeSets | None = None):
    return finalized(metrics_to_arrow(request, sets or AttributeSets()), context(received_ns))


def sdk_received_ns() -> int:
    strict = ExportMetricsServiceRequest.FromString((TESTDATA / "sdk_metrics.binpb").read_bytes())
    return strict.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].time_unix_nano + NS


def by_metric(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["metric_name"], []).append(row)
    return out


def test_sdk_payload_matches_golden_rows():
    result = adapt(sdk_request(), sdk_received_ns())
    assert result.outcome.rejected_count == 0
    assert result.table.schema == arrow_schema(POINTS)
    rows = sorted(plain_rows(result.table), key=lambda r: (r["metric_name"], str(r["attributes"])))
    check_golden(rows, TESTDATA / "sdk_metrics.expected.json")


def test_sdk_payload_values_units_and_kinds():
    rows = by_metric(plain_rows(adapt(sdk_request(), sdk_received_ns()).table))
    orders = {r["attributes"]["payment.method"]: r for r in rows["orders.placed"]}
    assert orders["card"]["value"] == 5.0 and orders["invoice"]["value"] == 2.0
    # Non-string attribute values are stored as JSON text.
    assert orders["card"]["attributes"]["retry"] == "false"
    assert orders["card"]["kind"] == "sum" and orders["card"]["temporality"] == "cumulative"
    assert orders["card"]["is_monotonic"] is True
    assert orders["card"]["description"] == "Orders placed"
    assert orders["card"]["service_name"] == "checkout"
    # Renamed to the current semantic-conventions spelling.
    assert orders["card"]["resource_attributes"]["deployment.environment.name"] == "prod"
    assert orders["card"]["scope_name"] == "checkout.instrumentation" and orders["card"]["scope_version"] == "0.9.0"
    [cart] = rows["cart.items"]
    assert cart["value"] == -3.0 and cart["is_monotonic"] is False and cart["attributes"] == {"cart.size": "7"}
    [latency] = rows["http.server.request.duration"]
    assert latency["kind"] == "histogram" and latency["unit"] == "s"
    assert latency["count"] == 4 and latency["sum"] == pytest.approx(1.724)
    assert latency["min"] == 0.004 and latency["max"] == 1.5
    assert len(latency["bucket_counts"]) == len(latency["bucket_bounds"]) + 1
    assert sum(latency["bucket_counts"]) == 4
    assert math.isnan(latency["value"])
    [size] = rows["payload.size"]
    assert size["kind"] == "exponential_histogram" and size["count"] == 3 and size["unit"] == "By"
    assert sum(size["exp_positive_counts"]) == 3
    [queue] = rows["queue.depth"]
    assert queue["kind"] == "gauge" and queue["value"] == 42.5 and queue["temporality"] == "unspecified"
    assert rows["cpu.utilization"][0]["value"] == 0.375
    assert rows["process.cpu.time"][0]["value"] == 12.25
    assert rows["pool.connections"][0]["value"] == 9.0
    assert all(r["quality_flags"] == [] for rs in rows.values() for r in rs)


def number_request(points: list[dict], name: str = "m", unit: str = "1") -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "svc"
    metric = rm.scope_metrics.add().metrics.add(name=name, unit=unit)
    for p in points:
        dp = metric.gauge.data_points.add(time_unix_nano=p.get("time", NOW), flags=p.get("flags", 0))
        if "value" in p:
            dp.as_double = p["value"]
        if "int" in p:
            dp.as_int = p["int"]
        for key, value in p.get("attrs", {}).items():
            dp.attributes.add(key=key).value.string_value = value
    return request


def lenient(request: ExportMetricsServiceRequest, replace: dict[bytes, bytes] | None = None):
    raw = request.SerializeToString()
    for old, new in (replace or {}).items():
        assert len(old) == len(new)
        raw = raw.replace(old, new)
    return decode_request(raw)


def test_invalid_utf8_attribute_rejects_only_that_point():
    request = number_request([
        {"value": 1.0, "attrs": {"host": "good-1"}},
        {"value": 2.0, "attrs": {"host": "BADBYTES"}},
        {"value": 3.0, "attrs": {"host": "good-3"}},
    ])
    result = adapt(lenient(request, {b"BADBYTES": b"BAD\xff\xfeYTE"}))
    assert [r["value"] for r in plain_rows(result.table)] == [1.0, 3.0]
    assert result.outcome.rejected_count == 1
    assert "not valid UTF-8" in result.outcome.message("data points")


def test_invalid_utf8_metric_name_rejects_that_metric_only():
    request = number_request([{"value": 1.0}], name="badname")
    metric = request.resource_metrics[0].scope_metrics[0].metrics.add(name="goodname")
    metric.gauge.data_points.add(time_unix_nano=NOW, as_double=7.0)
    result = adapt(lenient(request, {b"badname": b"bad\xc3\x28me"}))
    assert [r["metric_name"] for r in plain_rows(result.table)] == ["goodname"]
    assert result.outcome.reasons() == {"metric name, description or unit is not valid UTF-8": 1}


def test_times_outside_the_accept_window_are_rejected_by_reason():
    request = number_request([
        {"value": 1.0, "time": 0},
        {"value": 2.0, "time": NOW - 15 * 86400 * NS},
        {"value": 3.0, "time": NOW + 2 * 3600 * NS},
        {"value": 4.0, "time": 2**64 - 1},
        {"value": 5.0, "time": NOW - 60 * NS},
    ])
    result = adapt(lenient(request))
    assert [r["value"] for r in plain_rows(result.table)] == [5.0]
    assert result.outcome.reasons() == {
        "time_unix_nano is 0": 1,
        "time_unix_nano older than the accept window (1209600s)": 1,
        "time_unix_nano more than 3600s in the future": 2,
    }


def test_non_finite_values_are_kept_and_flagged():
    request = number_request([{"value": math.nan}, {"value": math.inf}, {"value": -math.inf}, {"value": 1.5}])
    result = adapt(lenient(request))
    rows = plain_rows(result.table)
    assert len(rows) == 4
    assert [r["quality_flags"] for r in rows] == [["non_finite"]] * 3 + [[]]
    assert result.outcome.rejected_count == 0
    assert result.outcome.message("data points") == "3 data points kept with a quality flag: non_finite"


def test_point_without_value_is_rejected_unless_flagged_no_recorded_value():
    request = number_request([{}, {"flags": 1}, {"int": 7}])
    result = adapt(lenient(request))
    rows = plain_rows(result.table)
    assert [r["point_flags"] for r in rows] == [1, 0]
    assert rows[0]["quality_flags"] == ["no_recorded_value"] and math.isnan(rows[0]["value"])
    assert rows[1]["value"] == 7.0
    assert result.outcome.reasons() == {"data point has no value": 1}


def test_histogram_with_mismatched_buckets_is_rejected():
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="h", unit="ms")
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    metric.histogram.data_points.add(time_unix_nano=NOW, count=3, sum=6, explicit_bounds=[1, 2], bucket_counts=[1, 1, 1])
    metric.histogram.data_points.add(time_unix_nano=NOW, count=3, explicit_bounds=[1, 2], bucket_counts=[1, 2])
    result = adapt(lenient(request))
    [row] = plain_rows(result.table)
    assert row["temporality"] == "delta" and row["sum"] == 6.0 and row["bucket_counts"] == [1, 1, 1]
    assert row["service_name"] == "unknown_service"
    assert result.outcome.reasons() == {"bucket_counts length is not len(explicit_bounds) + 1": 1}


def test_summary_points_keep_quantiles():
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="rpc_latency", unit="seconds")
    dp = metric.summary.data_points.add(time_unix_nano=NOW, count=10, sum=2.5)
    dp.quantile_values.add(quantile=0.5, value=0.2)
    dp.quantile_values.add(quantile=0.99, value=0.9)
    [row] = plain_rows(adapt(lenient(request)).table)
    assert (row["kind"], row["unit"], row["count"], row["sum"]) == ("summary", "s", 10, 2.5)
    assert row["quantiles"] == [0.5, 0.99] and row["quantile_values"] == [0.2, 0.9]


def test_attribute_cache_keeps_element_boundaries():
    # Two KeyValues sent as two elements, and the same bytes sent as one
    # element, must not share a cache entry (the second parses as one pair).
    one = KeyValue(key="a", value=AnyValue(string_value="1")).SerializeToString()
    two = KeyValue(key="b", value=AnyValue(string_value="2")).SerializeToString()
    sets = AttributeSets()
    assert sets.decode((one, two)) == (("a", "b"), ("1", "2"))
    assert sets.decode((one + two,)) == (("b",), ("2",))


def test_non_string_values_become_json_text():
    request = number_request([{"value": 1.0}])
    dp = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    dp.attributes.add(key="i").value.int_value = -12
    dp.attributes.add(key="d").value.double_value = 0.25
    dp.attributes.add(key="b").value.bool_value = True
    dp.attributes.add(key="raw").value.bytes_value = b"\x00\x01"
    arr = dp.attributes.add(key="arr").value.array_value
    arr.values.add().string_value = "x"
    arr.values.add().int_value = 3
    kv = dp.attributes.add(key="kv").value.kvlist_value.values.add(key="k")
    kv.value.bool_value = False
    [row] = plain_rows(adapt(lenient(request)).table)
    assert row["attributes"] == {"i": "-12", "d": "0.25", "b": "true", "raw": "AAE=", "arr": '["x",3]', "kv": '{"k":false}'}


def test_unit_spellings_are_normalized():
    for unit, expected in (("milliseconds", "ms"), ("Seconds", "s"), ("bytes", "By"), ("percent", "%"), ("{req}", "{req}")):
        [row] = plain_rows(adapt(lenient(number_request([{"value": 1.0}], unit=unit))).table)
        assert row["unit"] == expected


def test_empty_request_gives_an_empty_table():
    result = adapt(decode_request(b""))
    assert result.table.num_rows == 0 and result.outcome.message("data points") == ""
    assert result.table.schema == arrow_schema(POINTS)
