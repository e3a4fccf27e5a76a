"""OTLP/gRPC receiver: MetricsService, LogsService and TraceService Export.

Handlers take the raw request bytes (no deserializer) so the pipeline parses
them with its lenient message classes. gRPC itself decompresses gzip and
enforces max_receive_message_length on the decompressed message, answering
RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from telemetry_gateway.gateway.components.otlp.config import GrpcConfig
from telemetry_gateway.gateway.errors import BadRequest, GatewayError
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.receivers.callers import grpc_caller, grpc_credentials
from telemetry_gateway.gateway.components.otlp.responses import export_response
from telemetry_gateway.gateway.self_metrics import SelfMetrics

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline

log = logging.getLogger(__name__)
MIB = 1024 * 1024
HTTP2_MAX_FRAME = (1 << 24) - 1  # the largest RFC 9113 allows

SERVICES = {
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
}


def _status(exc: GatewayError) -> grpc.Status:
    code = status.grpc_code(exc)
    proto = status_pb2.Status(code=code.value[0], message=str(exc))
    wait = status.retry_after(exc)
    if wait is not None:
        detail = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)))
        proto.details.add().Pack(detail)
    elif isinstance(exc, BadRequest):
        detail = error_details_pb2.BadRequest()
        detail.field_violations.add(field="request", description=str(exc))
        proto.details.add().Pack(detail)
    return rpc_status.to_status(proto)


class OtlpGrpcReceiver:
    def __init__(self, config: GrpcConfig, pipeline: IngestPipeline, telemetry: SelfMetrics,
                 shared_port: bool = False) -> None:
        self.config = config
        self.shared_port = shared_port
        self.pipeline = pipeline
        self.telemetry = telemetry
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = int(self.config.max_recv_msg_size_mib * MIB)
        c = self.config.connections
        # Connections past the cap are closed before the handshake; one that does not finish its
        # handshake within request_timeout, or has no RPC for idle_timeout, is closed too.
        self._server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", int(self.shared_port)),
                     ("grpc.max_allowed_incoming_connections", c.max_connections),
                     ("grpc.server_handshake_timeout_ms", int(c.request_timeout * 1000)),
                     ("grpc.max_connection_idle_ms", int(c.idle_timeout * 1000)),
                     ("grpc.max_concurrent_streams", 100),
                     # Let clients send a message in a few large HTTP/2 frames rather than 16 KiB ones: the
                     # frames' handling was a third of the server's own CPU on 2000-point requests.
                     ("grpc.http2.max_frame_size", HTTP2_MAX_FRAME)],
            maximum_concurrent_rpcs=c.max_connections,
        )
        handlers = [
            grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(self._handler(signal))})
            for signal, service in SERVICES.items()
        ]
        self._server.add_generic_rpc_handlers(handlers)
        if self._listen() == 0:
            raise OSError(f"cannot listen on {self.config.endpoint}")
        await self._server.start()
        log.info("OTLP/gRPC listening on %s%s", self.config.endpoint, " (TLS)" if self.config.tls else "")

    def _listen(self) -> int:
        tls = self.config.tls
        if tls is None:
            return self._server.add_insecure_port(self.config.endpoint)
        cert, key, ca = tls.read()
        if ca is not None and tls.client_auth != "require":
            log.warning("OTLP/gRPC: client certificates are asked for only with tls.client_auth require (grpcio "
                        "cannot ask for an optional one); callers authenticate with tokens")
        credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                  require_client_auth=tls.client_auth == "require")
        return self._server.add_secure_port(self.config.endpoint, credentials)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None

    def _handler(self, signal: str):
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                caller = grpc_caller(context)
                report = await self.pipeline.ingest(f"otlp_{signal}", request, caller, f"otlp-grpc:{caller.peer}",
                                                    grpc_credentials(context))
            except GatewayError as exc:
                self.telemetry.request("grpc", signal, type(exc).__name__)
                await context.abort_with_status(_status(exc))
            self.telemetry.request("grpc", signal, "partial" if report.message else "ok")
            return export_response(signal, report).SerializeToString()

        return export

