"""Out-of-range and invalid values: each item is refused (or flagged) with its reason, the
request still gets the protocol's success answer, nothing answers 5xx, and nothing of a
request is kept before every item's fate is decided."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest, ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from tests.receivers.otlp_requests import post, unique
from tests.receivers.test_remote_write import HEADERS as RW_HEADERS
from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
import cramjam

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(listener_gateway):
    return listener_gateway
PB = {"Content-Type": "application/x-protobuf"}
JSON_HEADERS = {"Content-Type": "application/json"}


def rw(job: str, timestamps: list[int], labels: list[tuple[str, str]] = ()) -> bytes:
    request = WriteRequest()
    for i, ts in enumerate(timestamps):
        series = request.timeseries.add()
        for name, value in (("__name__", "hostile"), ("job", job), ("i", str(i)), *labels):
            series.labels.append(Label(name=name.encode(), value=value.encode()).SerializeToString())
        series.samples.add(value=1.0, timestamp=ts)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def test_remote_write_timestamps_out_of_range_are_refused_with_204(gateway):
    job = unique("rwts")
    now_ms = time.time_ns() // 10**6
    code, _, _ = post(gateway.http_url, "/api/v1/write", rw(job, [-5, 2**63 - 1, -2**63, now_ms]), RW_HEADERS)
    assert code == 204
    assert gateway.wait_rows(f"SELECT attributes['i'] AS i FROM telemetry.metric_points WHERE service_name = '{job}'", 1) == [{"i": "3"}]


def test_remote_write_duplicate_and_oversized_labels_are_refused(gateway):
    job = unique("rwlabels")
    now_ms = time.time_ns() // 10**6
    assert post(gateway.http_url, "/api/v1/write", rw(job, [now_ms], [("i", "again")]), RW_HEADERS)[0] == 204
    many = [(f"l{n}", "v") for n in range(300)]
    assert post(gateway.http_url, "/api/v1/write", rw(job, [now_ms], many), RW_HEADERS)[0] == 204
    assert post(gateway.http_url, "/api/v1/write", rw(job, [now_ms], [("big", "x" * 100_000)]), RW_HEADERS)[0] == 204
    text = gateway.metrics_text()
    assert 'gateway_rejected_total{format="remote_write",reason="invalid_attributes",tenant="default"}' in text
    assert gateway.rows(f"SELECT 1 FROM telemetry.metric_points WHERE service_name = '{job}'") == []


def spans_request(end_ns: int, trace_id: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "hostile-spans"
    rs.scope_spans.add().spans.add(trace_id=trace_id, span_id=b"\x01" * 8, name="GET", kind=2,
                                   start_time_unix_nano=time.time_ns() - 1000, end_time_unix_nano=end_ns)
    return request


def test_spans_ending_past_uint64_or_with_zero_ids_are_refused_over_grpc_http_and_json(gateway):
    far = spans_request(2**64 - 1, b"\x02" * 16)
    zero = spans_request(time.time_ns(), b"\x00" * 16)
    for request, reason in ((far, "outside the accept window"), (zero, "span ids")):
        code, _, body = post(gateway.http_url, "/v1/traces", request.SerializeToString(), PB)
        answer = ExportTraceServiceResponse.FromString(body)
        assert code == 200 and answer.partial_success.rejected_spans == 1 and reason in answer.partial_success.error_message
        with grpc.insecure_channel(gateway.grpc_endpoint) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            answer = ExportTraceServiceResponse.FromString(export(request.SerializeToString(), timeout=30))
        assert answer.partial_success.rejected_spans == 1
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "02" * 16, "spanId": "01" * 8, "name": "GET", "kind": 2,
        "startTimeUnixNano": "1", "endTimeUnixNano": str(2**64 - 1)}]}]}]}).encode()
    code, _, answer = post(gateway.http_url, "/v1/traces", body, JSON_HEADERS)
    assert code == 200 and json.loads(answer)["partialSuccess"]["rejectedSpans"] in (1, "1")


def test_zipkin_far_timestamps_are_refused_and_a_mixed_list_is_answered_once(gateway):
    service = unique("zip")
    now_us = time.time_ns() // 1000
    far = [{"traceId": "a" * 32, "id": "b" * 16, "name": "get", "kind": "SERVER", "timestamp": 1e30, "duration": 5,
            "localEndpoint": {"serviceName": service}}]
    code, _, text = post(gateway.http_url, "/api/v2/spans", json.dumps(far).encode(), JSON_HEADERS)
    assert code == 202 and b"1 spans rejected: span end time is outside the accept window" in text
    mixed = [{"traceId": "a" * 32, "id": "c" * 16, "name": "get", "kind": "SERVER", "timestamp": now_us, "duration": 5,
              "localEndpoint": {"serviceName": service}}, {"traceId": 5, "timestamp": "x"}]
    code, _, text = post(gateway.http_url, "/api/v2/spans", json.dumps(mixed).encode(), JSON_HEADERS)
    assert code == 202 and b"1 spans rejected" in text
    rows = gateway.wait_rows(f"SELECT value FROM telemetry.metric_points WHERE service_name = '{service}' "
                             "AND metric_name = 'apm.requests'", 1)
    assert rows == [{"value": 1}]
    # Found by the fuzzer: a duration past float range (JSON 1e400 is infinity).
    endless = b'[{"traceId": "' + b"a" * 32 + b'", "id": "f", "kind": "SERVER", "timestamp": 1, "duration": 1e400}]'
    code, _, text = post(gateway.http_url, "/api/v2/spans", endless, JSON_HEADERS)
    assert code == 202 and b"1 spans rejected" in text


def test_json_lines_with_numbers_past_float_range(gateway):
    body = b'{"msg": "big", "n": 1e400}\n{"ts": 1e400, "msg": "bad time"}\n{"ts": -5, "msg": "before 1970"}'
    code, _, answer = post(gateway.http_url, "/v1/logs/jsonl", body, {"Content-Type": "application/x-ndjson"})
    result = json.loads(answer)
    assert code == 200 and result["accepted"] == 1 and result["rejected"] == 2
    assert "time is not a number" in result["message"]
    wide = json.dumps({"msg": "wide", **{f"k{n}": n for n in range(1000)}}).encode()
    code, _, answer = post(gateway.http_url, "/v1/logs/jsonl", wide, {"Content-Type": "application/x-ndjson"})
    assert code == 200 and json.loads(answer)["message"] == "1 lines rejected: more than 128 attributes (limits.max_attributes)"


def _metric(request: ExportMetricsServiceRequest, name: str):
    rm = request.resource_metrics[0] if request.resource_metrics else request.resource_metrics.add()
    if not rm.resource.attributes:
        rm.resource.attributes.add(key="service.name").value.string_value = "hostile-metrics"
    return (rm.scope_metrics[0] if rm.scope_metrics else rm.scope_metrics.add()).metrics.add(name=name)


def invalid_points() -> tuple[ExportMetricsServiceRequest, dict[str, int]]:
    now = time.time_ns()
    request = ExportMetricsServiceRequest()
    hist = _metric(request, "h")
    hist.histogram.aggregation_temporality = 2
    hist.histogram.data_points.add(time_unix_nano=now, count=3, explicit_bounds=[5.0, 1.0], bucket_counts=[1, 1, 1])
    hist.histogram.data_points.add(time_unix_nano=now, count=3, explicit_bounds=[float("nan")], bucket_counts=[1, 2])
    hist.histogram.data_points.add(time_unix_nano=now, count=9, explicit_bounds=[1.0], bucket_counts=[1, 2])
    hist.histogram.data_points.add(time_unix_nano=now, count=3, explicit_bounds=[1.0], bucket_counts=[1, 2])  # valid
    exp = _metric(request, "e")
    exp.exponential_histogram.aggregation_temporality = 1
    exp.exponential_histogram.data_points.add(time_unix_nano=now, count=1, zero_count=1, scale=25)
    summary = _metric(request, "s")
    point = summary.summary.data_points.add(time_unix_nano=now, count=1, sum=1.0)
    point.quantile_values.add(quantile=1.5, value=1.0)
    counter = _metric(request, "c")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = 2
    counter.sum.data_points.add(time_unix_nano=now, as_double=-3.0)
    wide = _metric(request, "wide").gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    for n in range(1000):
        wide.attributes.add(key=f"k{n}").value.string_value = "v"
    long = _metric(request, "long").gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    long.attributes.add(key="k").value.string_value = "x" * 1_000_000
    reasons = {
        "explicit_bounds are not finite and strictly increasing": 2,
        "histogram count is not the sum of its bucket_counts": 1,
        "exponential histogram scale is outside -10..20": 1,
        "summary quantile is outside 0..1": 1,
        "monotonic sum value is negative": 1,
        "more than 128 attributes": 1,
        "longer than 4096 characters": 1,
    }
    return request, reasons


def test_invalid_points_are_refused_each_with_its_reason(gateway):
    request, reasons = invalid_points()
    code, _, body = post(gateway.http_url, "/v1/metrics", request.SerializeToString(), PB)
    answer = ExportMetricsServiceResponse.FromString(body)
    assert code == 200
    assert answer.partial_success.rejected_data_points == sum(reasons.values())
    for reason, n in reasons.items():
        assert f"{n} data points rejected: " in answer.partial_success.error_message
        assert reason in answer.partial_success.error_message
    rows = gateway.wait_rows("SELECT metric_name FROM telemetry.metric_points WHERE service_name = 'hostile-metrics'", 1)
    assert rows == [{"metric_name": "h"}]


def test_a_zipkin_service_name_that_is_not_text_does_not_poison_later_requests(gateway):
    # Found by the fuzzer: a number as serviceName entered the shared attribute registry
    # and every later batch failed to build.
    now_us = time.time_ns() // 1000
    span = {"traceId": "a" * 32, "id": "d" * 16, "name": 7, "kind": "SERVER", "timestamp": now_us, "duration": 5,
            "localEndpoint": {"serviceName": 9}}
    assert post(gateway.http_url, "/api/v2/spans", json.dumps([span]).encode(), JSON_HEADERS)[0] == 202
    service = unique("after_zipkin")
    span = dict(span, id="e" * 16, localEndpoint={"serviceName": service})
    assert post(gateway.http_url, "/api/v2/spans", json.dumps([span]).encode(), JSON_HEADERS)[0] == 202
    assert gateway.wait_rows(f"SELECT 1 FROM telemetry.metric_points WHERE service_name = '{service}'", 3)
    assert gateway.wait_rows("SELECT operation FROM (SELECT attributes['operation'] AS operation FROM "
                             "telemetry.metric_points WHERE service_name = '9')", 3)[0] == {"operation": "7"}
