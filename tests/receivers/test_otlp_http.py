"""OTLP/HTTP receiver against a real gateway process: statuses, bodies, stored rows."""

from __future__ import annotations

import gzip
import json
import math
import os
import time
import zlib

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from tests.receivers.otlp_requests import NS, gauge_request, log_request, post, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(listener_gateway):
    return listener_gateway

PB = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def send_metrics(gateway, body: bytes, headers=PB):
    return post(gateway.http_url, "/v1/metrics", body, headers)


def status_of(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


def stored(gateway, service: str, count: int, columns: str = "value, attributes, quality_flags") -> list[dict]:
    """Rows of a service once `count` have arrived (requests are answered before the insert)."""
    return gateway.wait_rows(
        f"SELECT {columns} FROM telemetry.metric_points WHERE service_name = '{service}' ORDER BY time, value", count
    )


def test_protobuf_metrics_are_stored_and_answered_with_full_success(gateway):
    service = unique("http_pb")
    now = time.time_ns()
    request = gauge_request(service, [
        {"value": 21.5, "time": now - 2 * NS, "attrs": {"room": "a"}},
        {"value": 22.0, "time": now - NS, "attrs": {"room": "b"}},
    ])
    code, headers, body = send_metrics(gateway, request.SerializeToString())
    assert code == 200 and headers["content-type"] == "application/x-protobuf"
    response = ExportMetricsServiceResponse.FromString(body)
    assert not response.HasField("partial_success")
    rows = stored(gateway, service, 2, "value, attributes, unit, toString(toUnixTimestamp64Nano(time)) AS t, source_id")
    assert rows == [
        {"value": 21.5, "attributes": {"room": "a"}, "unit": "Cel", "t": str(now - 2 * NS), "source_id": "otlp-http:127.0.0.1"},
        {"value": 22.0, "attributes": {"room": "b"}, "unit": "Cel", "t": str(now - NS), "source_id": "otlp-http:127.0.0.1"},
    ]


def test_gzip_and_deflate_bodies_are_accepted(gateway):
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        service = unique(f"http_{encoding}")
        raw = gauge_request(service, [{"value": 1.0}]).SerializeToString()
        code, _, _ = send_metrics(gateway, compress(raw), {**PB, "Content-Encoding": encoding})
        assert code == 200
        assert [r["value"] for r in stored(gateway, service, 1)] == [1.0]


def test_json_follows_the_otlp_json_rules(gateway):
    service = unique("http_json")
    now = time.time_ns()
    body = {
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "someFutureField": {"ignored": True},
            "scopeMetrics": [{"metrics": [{
                "name": "requests", "unit": "1",
                "sum": {
                    "aggregationTemporality": 2, "isMonotonic": True,
                    "dataPoints": [
                        {"timeUnixNano": str(now - NS), "asInt": "7", "attributes": [{"key": "code", "value": {"intValue": "200"}}]},
                        {"timeUnixNano": now, "asDouble": 2.5,
                         "exemplars": [{"timeUnixNano": str(now), "asDouble": 2.5,
                                        "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174"}]},
                    ],
                },
            }]}],
        }]
    }
    code, headers, response = send_metrics(gateway, json.dumps(body).encode(), JSON)
    assert code == 200 and headers["content-type"] == "application/json"
    assert json.loads(response) == {}
    rows = stored(gateway, service, 2, "value, attributes, temporality, is_monotonic")
    assert rows == [
        {"value": 7, "attributes": {"code": "200"}, "temporality": "cumulative", "is_monotonic": True},
        {"value": 2.5, "attributes": {}, "temporality": "cumulative", "is_monotonic": True},
    ]


def test_json_logs_keep_hex_trace_ids(gateway):
    service = unique("http_json_logs")
    body = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(time.time_ns()), "severityNumber": 17, "severityText": "ERROR",
            "body": {"stringValue": "disk full"},
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "eee19b7ec3c1b174",
        }]}],
    }]}
    code, _, response = post(gateway.http_url, "/v1/logs", json.dumps(body).encode(), JSON)
    assert code == 200 and json.loads(response) == {}
    rows = gateway.wait_rows(f"SELECT body, severity_number, trace_id, span_id FROM telemetry.log_records WHERE service_name = '{service}'", 1)
    assert rows == [{"body": "disk full", "severity_number": 17,
                     "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174"}]


def test_protobuf_logs_are_stored(gateway):
    service = unique("http_logs")
    code, _, body = post(gateway.http_url, "/v1/logs", log_request(service, ["one", "two"]).SerializeToString(), PB)
    assert code == 200 and not ExportLogsServiceResponse.FromString(body).HasField("partial_success")
    rows = gateway.wait_rows(f"SELECT body, severity_text FROM telemetry.log_records WHERE service_name = '{service}' ORDER BY body", 2)
    assert rows == [{"body": "one", "severity_text": "INFO"}, {"body": "two", "severity_text": "INFO"}]


def test_malformed_protobuf_is_a_400_with_a_status_body(gateway):
    code, headers, body = send_metrics(gateway, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert code == 400 and headers["content-type"] == "application/x-protobuf"
    status = status_of(body)
    assert status.code == 3  # INVALID_ARGUMENT
    assert status.message.startswith("request body is not a valid OTLP ExportMetricsServiceRequest")


def test_malformed_json_is_a_400_in_json(gateway):
    code, headers, body = send_metrics(gateway, b'{"resourceMetrics": [', JSON)
    assert code == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"].startswith("request body is not valid JSON")


def test_json_with_invalid_utf8_is_a_400(gateway):
    code, _, body = send_metrics(gateway, b'{"resourceMetrics": [{"x": "\xff"}]}', JSON)
    assert code == 400 and "not valid UTF-8 JSON" in json.loads(body)["message"]


def test_an_unsupported_content_type_is_a_415(gateway):
    code, _, body = send_metrics(gateway, b"temperature 21", {"Content-Type": "text/plain"})
    assert code == 415
    assert "Content-Type 'text/plain' is not supported" in json.loads(body)["message"]


def test_an_unsupported_content_encoding_is_a_415(gateway):
    code, _, body = send_metrics(gateway, b"xx", {**PB, "Content-Encoding": "br"})
    assert code == 415 and "Content-Encoding 'br' is not supported" in status_of(body).message


def test_truncated_gzip_is_a_400(gateway):
    raw = gzip.compress(gauge_request("x", [{"value": 1.0}] * 50).SerializeToString())
    code, _, body = send_metrics(gateway, raw[: len(raw) // 2], {**PB, "Content-Encoding": "gzip"})
    assert code == 400 and status_of(body).message == "gzip stream is truncated"


def test_a_gzip_bomb_is_a_413_measured_after_decompression(gateway):
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    code, headers, body = send_metrics(gateway, bomb, {**PB, "Content-Encoding": "gzip"})
    assert code == 413 and "retry-after" not in headers
    assert status_of(body).message == f"request body exceeds the limit of {20 * 1024 * 1024} bytes after decompression"


def test_an_oversized_body_is_a_413(gateway):
    code, _, body = send_metrics(gateway, os.urandom(21 * 1024 * 1024))
    assert code == 413 and "exceeds the limit" in status_of(body).message


def test_invalid_utf8_refuses_only_the_points_that_carry_it(gateway):
    service = unique("http_utf8")
    raw = gauge_request(service, [
        {"value": 1.0, "attrs": {"host": "good"}},
        {"value": 2.0, "attrs": {"host": "BADBYTE"}},
    ]).SerializeToString().replace(b"BADBYTE", b"BAD\xff\xfeTE")
    code, _, body = send_metrics(gateway, raw)
    assert code == 200
    partial = ExportMetricsServiceResponse.FromString(body).partial_success
    assert partial.rejected_data_points == 1
    assert partial.error_message == "1 data points rejected: attributes: a string value is not valid UTF-8 (byte 3)"
    assert stored(gateway, service, 1) == [{"value": 1.0, "attributes": {"host": "good"}, "quality_flags": []}]


def test_nan_and_inf_are_kept_flagged_with_a_warning(gateway):
    service = unique("http_nan")
    now = time.time_ns()
    raw = gauge_request(service, [
        {"value": math.nan, "time": now - 3}, {"value": math.inf, "time": now - 2}, {"value": 4.0, "time": now - 1},
    ]).SerializeToString()
    code, _, body = send_metrics(gateway, raw)
    partial = ExportMetricsServiceResponse.FromString(body).partial_success
    assert code == 200 and partial.rejected_data_points == 0
    assert partial.error_message == "2 data points kept with a quality flag: non_finite"
    rows = gateway.wait_rows(f"SELECT toString(value) AS v, quality_flags FROM telemetry.metric_points WHERE service_name = '{service}' ORDER BY time", 3)
    assert rows == [{"v": "nan", "quality_flags": ["non_finite"]}, {"v": "inf", "quality_flags": ["non_finite"]}, {"v": "4", "quality_flags": []}]


def test_zero_and_far_future_times_are_refused_beside_valid_points(gateway):
    service = unique("http_time")
    raw = gauge_request(service, [
        {"value": 1.0, "time": 0}, {"value": 2.0, "time": time.time_ns() + 86400 * NS}, {"value": 3.0},
    ]).SerializeToString()
    code, _, body = send_metrics(gateway, raw)
    partial = ExportMetricsServiceResponse.FromString(body).partial_success
    assert code == 200 and partial.rejected_data_points == 2
    assert partial.error_message == (
        "1 data points rejected: time_unix_nano is 0; 1 data points rejected: time_unix_nano more than 3600s in the future"
    )
    assert [r["value"] for r in stored(gateway, service, 1)] == [3.0]


def test_an_empty_request_is_a_full_success(gateway):
    for headers, body in ((PB, b""), (JSON, b"{}")):
        code, _, response = send_metrics(gateway, body, headers)
        assert code == 200
        assert response in (b"", b"{}")


@pytest.mark.parametrize("workers", [0, 2])
def test_without_the_spool_throttling_answers_429_with_retry_after(start_gateway, workers):
    gw = start_gateway({"spool": {"enabled": False}, "limits": {"max_pending_rows": 3, "retry_after": "2s"},
                        "receivers": {"otlp": {"workers": workers}}})
    code, headers, body = send_metrics(gw, gauge_request("throttled", [{"value": float(i)} for i in range(5)]).SerializeToString())
    assert code == 429 and headers["retry-after"] == "2"
    assert "rows are waiting for the default store" in status_of(body).message
    code, _, _ = send_metrics(gw, gauge_request("small", [{"value": 1.0}]).SerializeToString())
    assert code == 200


def test_self_metrics_count_accepted_and_rejected(gateway):
    service = unique("http_counts")
    send_metrics(gateway, gauge_request(service, [{"value": 1.0}, {"value": 2.0, "time": 0}]).SerializeToString())
    # A listener worker's request count reaches the gateway process a moment after its answer.
    request_count = 'gateway_requests_total{format="metrics",outcome="partial",transport="http"}'
    deadline = time.monotonic() + 10
    while request_count not in (text := gateway.metrics_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'gateway_accepted_total{format="otlp_metrics",tenant="default"}' in text
    # By reason code, not by the words of the message.
    assert 'gateway_rejected_total{format="otlp_metrics",reason="time_missing",tenant="default"}' in text
    assert 'gateway_requests_total{format="metrics",outcome="partial",transport="http"}' in text
    # The same account per request in the store, beside the rows it kept.
    logged = gateway.wait_rows(
        "SELECT format, transport, peer, accepted, rejected, stored_rows FROM telemetry.ingest_log WHERE batch_id IN "
        f"(SELECT batch_id FROM telemetry.metric_points WHERE service_name = '{service}')", 1)
    assert logged == [{"format": "otlp_metrics", "transport": "http", "peer": "127.0.0.1", "accepted": 1,
                       "rejected": {"time_missing": 1}, "stored_rows": {"metric_points": 1}}]
    assert 'gateway_stored_total{region="default",table="metric_points"}' in text
    assert "gateway_batch_insert_seconds_bucket" in text and "gateway_queue_rows" in text


def test_health_and_readiness(gateway):
    import urllib.request

    with urllib.request.urlopen(gateway.admin_url + "/healthz") as r:
        assert r.status == 200 and r.read() == b"ok\n"
    with urllib.request.urlopen(gateway.admin_url + "/readyz") as r:
        assert r.status == 200 and r.read() == b"ready\n"


def test_normalization_config_applies_to_stored_rows(start_gateway, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("services:\n  shop: {team: payments, tier: 1}\n")
    gw = start_gateway({"normalize": {"service_catalog": str(catalog), "cumulative_to_delta": ["orders"],
                                      "attribute_names": {"env": "deployment.environment.name"}}})
    now = time.time_ns()
    request = gauge_request("shop", [{"value": 250.0, "time": now - 3 * NS, "attrs": {"env": "prod"}}], name="latency")
    request.resource_metrics[0].scope_metrics[0].metrics[0].unit = "ms"
    counter = request.resource_metrics[0].scope_metrics[0].metrics.add(name="orders", unit="1")
    counter.sum.aggregation_temporality = 2
    counter.sum.is_monotonic = True
    for value, ago in ((10, 2), (16, 1)):
        counter.sum.data_points.add(time_unix_nano=now - ago * NS, start_time_unix_nano=now - 60 * NS, as_double=value)
    assert send_metrics(gw, request.SerializeToString())[0] == 200
    rows = gw.wait_rows("SELECT metric_name, unit, value, temporality, attributes, resource_attributes['service.owner.team'] AS team "
                        "FROM telemetry.metric_points ORDER BY metric_name", 2)
    assert rows == [
        {"metric_name": "latency", "unit": "s", "value": 0.25, "temporality": "unspecified",
         "attributes": {"deployment.environment.name": "prod"}, "team": "payments"},
        {"metric_name": "orders", "unit": "1", "value": 6, "temporality": "delta", "attributes": {}, "team": "payments"},
    ]
