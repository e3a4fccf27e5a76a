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

from telemetry_gateway.gateway.errors import BadRequest, GatewayError, Throttled, UnsupportedMediaType
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.receivers import status
from telemetry_gateway.gateway.receivers.body import too_large
from telemetry_gateway.gateway.receivers.body_route import BodyRoute, retry_headers


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


class RemoteWriteRoute(BodyRoute):
    path = "/api/v1/write"
    name = "remote_write"
    content_types = ("application/x-protobuf",)

    def decode(self, body: bytes, encoding: str) -> bytes:
        return decode_body(body, encoding, self.limit)

    def answer(self, report: IngestReport) -> web.Response:
        return web.Response(status=204)

    def error(self, exc: GatewayError) -> web.Response:
        # Prometheus retries 5xx, and 429 only when configured to: throttle with 503.
        code = 503 if isinstance(exc, Throttled) else status.http_status(exc)
        return web.Response(status=code, text=f"{exc}\n", headers=retry_headers(exc))
