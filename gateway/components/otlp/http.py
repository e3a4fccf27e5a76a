"""OTLP/HTTP receiver: POST /v1/metrics, /v1/logs, /v1/traces (and remote write on the same listener).

Protobuf (application/x-protobuf) and JSON (application/json) bodies, gzip or
deflate or none. The response has the request's Content-Type: an Export*
ServiceResponse on success (with partial_success when items were refused), a
google.rpc.Status on failure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from google.rpc import status_pb2

from telemetry_gateway.gateway.components.otlp.config import HttpConfig
from telemetry_gateway.gateway.errors import GatewayError, RequestTimeout, UnsupportedMediaType
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.components.otlp.responses import export_response
from telemetry_gateway.gateway.receivers import connections
from telemetry_gateway.gateway.receivers.body import decompress
from telemetry_gateway.gateway.components.otlp.json import json_to_protobuf, response_json
from telemetry_gateway.gateway.receivers.callers import http_caller, http_credentials
from telemetry_gateway.gateway.self_metrics import SelfMetrics

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MIB = 1024 * 1024


def _encode(message, content_type: str) -> bytes:
    return response_json(message) if content_type == JSON else message.SerializeToString()


class OtlpHttpReceiver:
    def __init__(self, config: HttpConfig, pipeline: IngestPipeline, telemetry: SelfMetrics, routes=(),
                 shared_port: bool = False) -> None:
        self.config = config
        self.shared_port = shared_port
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.limit = int(config.max_request_body_mib * MIB)
        self._runner: web.AppRunner | None = None
        # Other components' routes on this listener: factories taking (limit, read_body).
        self.routes = list(routes)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limit)
        app.router.add_post("/v1/metrics", self._handler("metrics"))
        app.router.add_post("/v1/logs", self._handler("logs"))
        app.router.add_post("/v1/traces", self._handler("traces"))
        for make_routes in self.routes:
            for route in make_routes(self.limit, self._read):
                route.register(app)
        return app

    async def start(self) -> None:
        # auto_decompress off: we decompress ourselves, with the limit applied.
        self._runner = await connections.serve(self.app(), self.config.endpoint, self.config.connections, "OTLP/HTTP",
                                               self.config.tls, reuse_port=self.shared_port, auto_decompress=False)
        log.info("OTLP/HTTP listening on %s%s", self.config.endpoint, " (TLS)" if self.config.tls else "")

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _handler(self, signal: str):
        async def handle(request: web.Request) -> web.Response:
            content_type = request.content_type if request.content_type in (PROTOBUF, JSON) else JSON
            try:
                report = await self._ingest(signal, request)
            except GatewayError as exc:
                self.telemetry.request("http", signal, type(exc).__name__)
                return self._error(exc, content_type)
            self.telemetry.request("http", signal, "partial" if report.message else "ok")
            return web.Response(body=_encode(export_response(signal, report), content_type), content_type=content_type)

        return handle

    async def _ingest(self, signal: str, request: web.Request) -> IngestReport:
        caller = http_caller(request)
        admission = await self.pipeline.admit_request(f"otlp_{signal}", caller, http_credentials(request))
        if request.content_type not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(
                f"Content-Type {request.content_type!r} is not supported (use {PROTOBUF} or {JSON})"
            )
        raw = await self._read(request)
        encoding = request.headers.get("Content-Encoding", "")
        if request.content_type == PROTOBUF and encoding.strip().lower() in ("", "identity", "none"):
            body = decompress(raw, encoding, self.limit)  # nothing to inflate or parse: no thread hop
        else:
            # Off the event loop: inflating and parsing JSON take time in proportion to the body.
            body = await asyncio.to_thread(self._decode, signal, raw, encoding, request.content_type)
        return await self.pipeline.ingest(f"otlp_{signal}", body, caller, f"otlp-http:{caller.peer}",
                                          admission=admission)

    def _decode(self, signal: str, raw: bytes, encoding: str, content_type: str) -> bytes:
        body = decompress(raw, encoding, self.limit)
        return json_to_protobuf(signal, body) if content_type == JSON else body

    async def _read(self, request: web.Request) -> bytes:
        return await connections.read_body(request, self.limit, self.config.connections.request_timeout)

    def _error(self, exc: GatewayError, content_type: str) -> web.Response:
        code = status.http_status(exc)
        body = status_pb2.Status(code=status.grpc_code(exc).value[0], message=str(exc))
        headers = {}
        wait = status.retry_after(exc)
        if wait is not None:
            headers["Retry-After"] = str(max(1, round(wait)))
        if code >= 500 and not exc.retryable:
            log.warning("request failed permanently: %s", exc)
        response = web.Response(status=code, body=_encode(body, content_type), content_type=content_type, headers=headers)
        if isinstance(exc, RequestTimeout):
            response.force_close()  # do not wait for the rest of a body that is not coming
        return response
