"""What the extra HTTP routes (remote write, Zipkin, JSON lines) share: a checked
Content-Type, a bounded body, one pipeline call, and errors mapped in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from telemetry_gateway.gateway.errors import GatewayError, RequestTimeout, UnsupportedMediaType
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.receivers.callers import http_caller, http_credentials
from telemetry_gateway.gateway.self_metrics import SelfMetrics

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline


def retry_headers(exc: GatewayError) -> dict[str, str]:
    wait = status.retry_after(exc)
    return {} if wait is None else {"Retry-After": str(max(1, round(wait)))}


class BodyRoute:
    path = ""
    name = ""
    content_types: tuple[str, ...] = ()

    def __init__(self, pipeline: IngestPipeline, telemetry: SelfMetrics, limit: int, read_body) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.limit = limit
        self.read_body = read_body

    def register(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            caller = http_caller(request)
            admission = await self.pipeline.admit_request(self.name, caller, http_credentials(request))
            if request.content_type not in self.content_types:
                raise UnsupportedMediaType(
                    f"Content-Type must be {' or '.join(self.content_types)}, got {request.content_type!r}")
            raw = await self.read_body(request)
            body = await asyncio.to_thread(self.decode, raw, request.headers.get("Content-Encoding", ""))
            report = await self.pipeline.ingest(self.name, body, caller, f"{self.name}:{caller.peer}",
                                                admission=admission)
        except GatewayError as exc:
            self.telemetry.request("http", self.name, type(exc).__name__)
            response = self.error(exc)
            if isinstance(exc, RequestTimeout):
                response.force_close()  # do not wait for the rest of a body that is not coming
            return response
        self.telemetry.request("http", self.name, "partial" if report.message else "ok")
        return self.answer(report)

    def decode(self, body: bytes, encoding: str) -> bytes:
        raise NotImplementedError

    def answer(self, report: IngestReport) -> web.Response:
        raise NotImplementedError

    def error(self, exc: GatewayError) -> web.Response:
        return web.Response(status=status.http_status(exc), text=f"{exc}\n", headers=retry_headers(exc))
