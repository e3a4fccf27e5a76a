"""Prometheus remote write 1.0 receiver: POST /api/v1/write on the HTTP listener.

Body: snappy block format (not framed) of a protobuf WriteRequest. Answers:
204 when stored in the spool (samples refused for their content are counted
in /metrics, never answered with a 4xx: Prometheus drops a batch on 4xx and
would lose the valid samples beside them); 400 for a body that is not snappy
or not a WriteRequest (retrying cannot help); 413 past the size limit, read
from the snappy length header before decompressing; 415 for a wrong
Content-Type or Content-Encoding; 503 with Retry-After when throttling, which
Prometheus retries.
"""

from __future__ import annotations

import cramjam
from aiohttp import web

from gateway.errors import BadRequest, GatewayError, Throttled, UnsupportedMediaType
from gateway.pipeline import IngestPipeline
from gateway.receivers import status
from gateway.receivers.body import too_large
from gateway.telemetry import Telemetry


def snappy_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares (its leading varint)."""
    length, shift = 0, 0
    for i, byte in enumerate(body[:10]):
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
    raise BadRequest("body is not snappy-compressed: bad length header")


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding.strip().lower() != "snappy":
        raise UnsupportedMediaType(f"Content-Encoding must be snappy for remote write, got {encoding or 'none'!r}")
    if snappy_length(body) > limit:
        raise too_large(limit, " after decompression")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"body is not valid snappy data: {exc}") from None


class RemoteWriteRoute:
    def __init__(self, pipeline: IngestPipeline, telemetry: Telemetry, limit: int, read_body) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.limit = limit
        self.read_body = read_body

    def register(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/write", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            if request.content_type != "application/x-protobuf":
                raise UnsupportedMediaType(f"Content-Type must be application/x-protobuf, got {request.content_type!r}")
            raw = decode_body(await self.read_body(request), request.headers.get("Content-Encoding", ""), self.limit)
            await self.pipeline.ingest("remote_write", raw, f"remote-write:{request.remote or 'unknown'}")
        except GatewayError as exc:
            self.telemetry.request("http", "remote_write", type(exc).__name__)
            return self._error(exc)
        self.telemetry.request("http", "remote_write", "ok")
        return web.Response(status=204)

    def _error(self, exc: GatewayError) -> web.Response:
        code = status.http_status(exc)
        headers = {}
        wait = status.retry_after(exc)
        if wait is not None:
            # Prometheus retries 5xx; 429 only when configured to.
            code = 503 if isinstance(exc, Throttled) else code
            headers["Retry-After"] = str(max(1, round(wait)))
        return web.Response(status=code, text=f"{exc}\n", headers=headers)
