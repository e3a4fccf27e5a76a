"""`receivers.otlp`: the OTLP/gRPC listener, and the HTTP listener that OTLP/HTTP shares with remote write, Zipkin and JSON lines."""

from __future__ import annotations

from pydantic import Field

from telemetry_gateway.gateway.config_base import ConnectionLimits, Endpoint, Model, TlsConfig


class GrpcConfig(Model):
    enabled: bool = True
    # Localhost unless configured: exposing the port is an explicit decision.
    endpoint: Endpoint = "127.0.0.1:4317"
    max_recv_msg_size_mib: float = Field(4, gt=0, le=256)
    connections: ConnectionLimits = ConnectionLimits()
    tls: TlsConfig | None = None


class HttpConfig(Model):
    enabled: bool = True
    endpoint: Endpoint = "127.0.0.1:4318"
    # OTLP/HTTP recommends 20 MiB, measured after decompression.
    max_request_body_mib: float = Field(20, gt=0, le=512)
    connections: ConnectionLimits = ConnectionLimits()
    tls: TlsConfig | None = None


class OtlpConfig(Model):
    grpc: GrpcConfig = GrpcConfig()
    http: HttpConfig = HttpConfig()
    # Processes of their own serving both listeners, on shared ports; 0: the gateway process serves them.
    workers: int = Field(0, ge=0, le=64)
