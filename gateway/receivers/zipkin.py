"""Zipkin v2 receiver: POST /api/v2/spans (JSON) on the HTTP listener, for the RED series.

Answers 202 like Zipkin; 400 for a body that is not a JSON span list; 413 over
the size limit (after decompression); 415 for another Content-Type.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import GatewayError, UnsupportedMediaType
from gateway.pipeline import IngestPipeline
from gateway.receivers import status
from gateway.receivers.body import decompress
from gateway.telemetry import Telemetry


class ZipkinRoute:
    def __init__(self, pipeline: IngestPipeline, telemetry: Telemetry, limit: int, read_body) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.limit = limit
        self.read_body = read_body

    def register(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/spans", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            if request.content_type != "application/json":
                raise UnsupportedMediaType(f"Content-Type must be application/json, got {request.content_type!r}")
            body = decompress(await self.read_body(request), request.headers.get("Content-Encoding", ""), self.limit)
            report = await self.pipeline.ingest("zipkin", body, f"zipkin:{request.remote or 'unknown'}")
        except GatewayError as exc:
            self.telemetry.request("http", "zipkin", type(exc).__name__)
            headers = {}
            wait = status.retry_after(exc)
            if wait is not None:
                headers["Retry-After"] = str(max(1, round(wait)))
            return web.Response(status=status.http_status(exc), text=f"{exc}\n", headers=headers)
        self.telemetry.request("http", "zipkin", "partial" if report.message else "ok")
        return web.Response(status=202, text=f"{report.message}\n" if report.message else "")
