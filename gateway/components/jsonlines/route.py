"""JSON lines over HTTP: POST /v1/logs/jsonl on the HTTP listener.

One JSON object per line (application/x-ndjson or application/json), gzip or
deflate allowed. Lines that are not log objects are refused one by one; the
answer (200) says how many were kept and why the others were not.
"""

from __future__ import annotations


from aiohttp import web

from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.receivers.body import decompress
from telemetry_gateway.gateway.receivers.body_route import BodyRoute, retry_headers

TYPES = ("application/x-ndjson", "application/jsonl", "application/json")


class JsonLinesRoute(BodyRoute):
    path = "/v1/logs/jsonl"
    name = "jsonlines"
    content_types = TYPES

    def decode(self, body: bytes, encoding: str) -> bytes:
        return decompress(body, encoding, self.limit)

    def answer(self, report: IngestReport) -> web.Response:
        return web.json_response({"accepted": report.accepted, "rejected": report.rejected, "message": report.message})

    def error(self, exc: GatewayError) -> web.Response:
        return web.json_response({"error": str(exc)}, status=status.http_status(exc), headers=retry_headers(exc))
