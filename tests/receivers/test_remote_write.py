"""Remote write receiver: statuses for hostile input, valid samples kept."""

from __future__ import annotations

import time

import cramjam
import pytest

from telemetry_gateway.adapters.prometheus.prompb import Label, WriteRequest
from tests.receivers.otlp_requests import post, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(listener_gateway):
    return listener_gateway

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


def write_request(job: str, samples: list[tuple[str, float, int]]) -> bytes:
    request = WriteRequest()
    for name, value, ts in samples:
        series = request.timeseries.add()
        series.labels.append(Label(name=b"__name__", value=name.encode()).SerializeToString())
        series.labels.append(Label(name=b"job", value=job.encode()).SerializeToString())
        series.samples.add(value=value, timestamp=ts)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def test_valid_samples_are_kept_and_bad_ones_counted_with_204(gateway):
    job = unique("rw")
    now_ms = time.time_ns() // 1_000_000
    body = write_request(job, [("cpu_temp_celsius", 51.5, now_ms - 1000), ("cpu_temp_celsius", 52.0, 0),
                               ("jobs_done_total", 7, now_ms - 1000)])
    code, _, _ = post(gateway.http_url, "/api/v1/write", body, HEADERS)
    assert code == 204
    rows = gateway.wait_rows(f"SELECT metric_name, value, kind, unit FROM telemetry.metric_points WHERE service_name = '{job}' "
                             "ORDER BY metric_name", 2)
    assert rows == [{"metric_name": "cpu_temp_celsius", "value": 51.5, "kind": "gauge", "unit": "Cel"},
                    {"metric_name": "jobs_done_total", "value": 7, "kind": "sum", "unit": ""}]
    assert 'gateway_rejected_total{format="remote_write",reason="time_missing",tenant="default"} 1.0' in gateway.metrics_text()


@pytest.mark.parametrize("body, headers, status, message", [
    (b"\x10garbage-not-snappy", HEADERS, 400, "not valid snappy"),
    (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), HEADERS, 400, "not a valid Prometheus WriteRequest"),
    (b"\xff\xff\xff\xff\x0f", HEADERS, 413, "exceeds the limit"),  # declares 4 GiB uncompressed
    (bytes(cramjam.snappy.compress_raw(b"x")), {**HEADERS, "Content-Encoding": "gzip"}, 415, "must be snappy"),
    (bytes(cramjam.snappy.compress_raw(b"x")), {**HEADERS, "Content-Type": "text/plain"}, 415, "application/x-protobuf"),
])
def test_hostile_bodies_get_the_right_status(gateway, body, headers, status, message):
    code, _, text = post(gateway.http_url, "/api/v1/write", body, headers)
    assert code == status and message in text.decode()


def test_a_truncated_snappy_body_is_a_400(gateway):
    body = write_request("truncated", [("m", 1.0, time.time_ns() // 1_000_000)] * 50)
    code, _, text = post(gateway.http_url, "/api/v1/write", body[: len(body) // 2], HEADERS)
    assert code == 400 and "snappy" in text.decode()
