"""JSON lines over HTTP: POST /v1/logs/jsonl on the HTTP listener.

One JSON object per line (application/x-ndjson or application/json), gzip or
deflate allowed. Lines that are not log objects are refused one by one; the
answer (200) says how many were kept and why the others were not.
"""

from __future__ import annotations

import json

from aiohttp import web

from gateway.errors import GatewayError, UnsupportedMediaType
from gateway.pipeline import IngestPipeline
from gateway.receivers import status
from gateway.receivers.body import decompress
from gateway.telemetry import Telemetry

TYPES = ("application/x-ndjson", "application/jsonl", "application/json")


class JsonLinesRoute:
    def __init__(self, pipeline: IngestPipeline, telemetry: Telemetry, limit: int, read_body) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.limit = limit
        self.read_body = read_body

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/logs/jsonl", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            if request.content_type not in TYPES:
                raise UnsupportedMediaType(f"Content-Type must be one of {', '.join(TYPES)}, got {request.content_type!r}")
            body = decompress(await self.read_body(request), request.headers.get("Content-Encoding", ""), self.limit)
            report = await self.pipeline.ingest("jsonlines", body, f"jsonl:{request.remote or 'unknown'}")
        except GatewayError as exc:
            self.telemetry.request("http", "jsonlines", type(exc).__name__)
            headers = {}
            wait = status.retry_after(exc)
            if wait is not None:
                headers["Retry-After"] = str(max(1, round(wait)))
            return web.json_response({"error": str(exc)}, status=status.http_status(exc), headers=headers)
        self.telemetry.request("http", "jsonlines", "partial" if report.message else "ok")
        return web.json_response({"accepted": report.accepted, "rejected": report.rejected, "message": report.message})
