"""Request bodies: bounded reads and bounded decompression.

The size limit applies after decompression (as OTLP/HTTP says), and the
decompressor stops as soon as it passes the limit, so a small gzip bomb
costs at most the limit in memory.
"""

from __future__ import annotations

import zlib

from gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def too_large(limit: int, after: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes{after}")


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        if len(body) > limit:
            raise too_large(limit)
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"request body is not valid {encoding} data: {exc}") from None
        if len(out) > limit:
            raise too_large(limit, " after decompression")
        if not inflater.eof:
            if inflater.unconsumed_tail:
                raise too_large(limit, " after decompression")
            raise BadRequest(f"{encoding} stream is truncated")
        # gzip allows several members back to back; keep going on what follows.
        data = inflater.unused_data if encoding != "deflate" else b""
    return bytes(out)
