"""Zipkin v2 receiver: POST /api/v2/spans (JSON) on the HTTP listener, for the RED series.

Answers 202 like Zipkin; 400 for a body that is not a JSON span list; 413 over
the size limit (after decompression); 415 for another Content-Type.
"""

from __future__ import annotations

from aiohttp import web

from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.receivers.body import decompress
from telemetry_gateway.gateway.receivers.body_route import BodyRoute


class ZipkinRoute(BodyRoute):
    path = "/api/v2/spans"
    name = "zipkin"
    content_types = ("application/json",)

    def decode(self, body: bytes, encoding: str) -> bytes:
        return decompress(body, encoding, self.limit)

    def answer(self, report: IngestReport) -> web.Response:
        return web.Response(status=202, text=f"{report.message}\n" if report.message else "")
