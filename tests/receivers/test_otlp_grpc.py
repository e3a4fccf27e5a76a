"""OTLP/gRPC receiver against a real gateway process, with raw byte payloads."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from tests.receivers.otlp_requests import gauge_request, log_request, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(listener_gateway):
    return listener_gateway

METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def call(gateway, method: str, payload: bytes, compression=None) -> bytes:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(gateway.grpc_endpoint, options=options) as channel:
        return channel.unary_unary(method)(payload, timeout=30, compression=compression)


def details(error: grpc.RpcError) -> list:
    """The google.rpc.Status details a server attached, unpacked."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            out = []
            for any_detail in status.details:
                for cls in (error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
                    if any_detail.Is(cls.DESCRIPTOR):
                        detail = cls()
                        any_detail.Unpack(detail)
                        out.append(detail)
            return out
    return []


def test_metrics_and_logs_are_stored(gateway):
    service = unique("grpc")
    response = ExportMetricsServiceResponse.FromString(
        call(gateway, METRICS, gauge_request(service, [{"value": 3.5, "attrs": {"k": "v"}}]).SerializeToString())
    )
    assert not response.HasField("partial_success")
    logs = ExportLogsServiceResponse.FromString(call(gateway, LOGS, log_request(service, ["hello"]).SerializeToString()))
    assert not logs.HasField("partial_success")
    assert gateway.wait_rows(f"SELECT value, attributes, source_id FROM telemetry.metric_points WHERE service_name = '{service}'", 1) == [
        {"value": 3.5, "attributes": {"k": "v"}, "source_id": "otlp-grpc:127.0.0.1"}
    ]
    assert gateway.wait_rows(f"SELECT body FROM telemetry.log_records WHERE service_name = '{service}'", 1) == [{"body": "hello"}]


def test_gzip_compressed_requests_are_accepted(gateway):
    service = unique("grpc_gzip")
    call(gateway, METRICS, gauge_request(service, [{"value": 1.0}] * 100).SerializeToString(), grpc.Compression.Gzip)
    assert len(gateway.wait_rows(f"SELECT value FROM telemetry.metric_points WHERE service_name = '{service}'", 100)) == 100


def test_malformed_protobuf_is_invalid_argument_with_bad_request_details(gateway):
    with pytest.raises(grpc.RpcError) as info:
        call(gateway, METRICS, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("request body is not a valid OTLP ExportMetricsServiceRequest")
    [bad] = details(info.value)
    assert isinstance(bad, error_details_pb2.BadRequest) and bad.field_violations[0].field == "request"


def test_oversized_messages_are_resource_exhausted_without_retry_info(gateway):
    big = gauge_request("big", [{"value": 1.0, "attrs": {"pad": "x" * 1000}}] * 5000).SerializeToString()
    assert len(big) > 4 * 1024 * 1024
    with pytest.raises(grpc.RpcError) as info:
        call(gateway, METRICS, big)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(info.value) == []


def test_invalid_utf8_is_a_partial_success(gateway):
    service = unique("grpc_utf8")
    raw = gauge_request(service, [{"value": 1.0}, {"value": 2.0, "attrs": {"h": "BADBYTE"}}]).SerializeToString()
    response = ExportMetricsServiceResponse.FromString(call(gateway, METRICS, raw.replace(b"BADBYTE", b"BAD\xc3\x28TE")))
    assert response.partial_success.rejected_data_points == 1
    assert "not valid UTF-8" in response.partial_success.error_message
    assert gateway.wait_rows(f"SELECT value FROM telemetry.metric_points WHERE service_name = '{service}'", 1) == [{"value": 1.0}]


@pytest.mark.parametrize("workers", [0, 2])
def test_without_the_spool_throttling_is_unavailable_with_retry_info(start_gateway, workers):
    gw = start_gateway({"spool": {"enabled": False}, "limits": {"max_pending_rows": 3, "retry_after": "3s"},
                        "receivers": {"otlp": {"workers": workers}}})
    with pytest.raises(grpc.RpcError) as info:
        call(gw, METRICS, gauge_request("throttled", [{"value": float(i)} for i in range(5)]).SerializeToString())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    [retry] = details(info.value)
    assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 3


def test_a_compressed_bomb_is_measured_after_decompression(gateway):
    bomb = gauge_request("bomb", [{"value": 1.0, "attrs": {"pad": "x" * (8 * 1024 * 1024)}}]).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        call(gateway, METRICS, bomb, grpc.Compression.Gzip)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
