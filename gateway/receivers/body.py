"""Request bodies: bounded reads and bounded decompression.

The size limit applies after decompression (as OTLP/HTTP says), and the
decompressor stops as soon as it passes the limit, so a small gzip bomb
costs at most the limit in memory.
"""

from __future__ import annotations

import zlib

from telemetry_gateway.gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def too_large(limit: int, after: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes{after}")


# A gzip body may hold several members back to back (RFC 1952); real clients
# send one. Each member costs a fresh inflater, so their number is capped.
MAX_MEMBERS = 64
_CHUNK = 256 * 1024


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        if len(body) > limit:
            raise too_large(limit)
        return body
    if encoding not in _WBITS:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    out = bytearray()
    view, position, members = memoryview(body), 0, 0
    while position < len(view):
        members += 1
        if members > MAX_MEMBERS:
            raise BadRequest(f"{encoding} body has more than {MAX_MEMBERS} members")
        position = _inflate_member(view, position, _WBITS[encoding], out, limit, encoding)
        if encoding == "deflate":
            break
    return bytes(out)


def _inflate_member(view: memoryview, position: int, wbits: int, out: bytearray, limit: int, encoding: str) -> int:
    """Inflate one member starting at `position` into `out`; return where the next starts.

    Input goes in bounded chunks, so what the inflater copies back as
    `unused_data` is at most one chunk: linear in the body, however many
    members it has.
    """
    inflater = zlib.decompressobj(wbits)
    while not inflater.eof:
        if position >= len(view):
            raise BadRequest(f"{encoding} stream is truncated")
        chunk = view[position:position + _CHUNK]
        try:
            out += inflater.decompress(chunk, limit + 1 - len(out))
        except zlib.error as exc:
            raise BadRequest(f"request body is not valid {encoding} data: {exc}") from None
        if len(out) > limit or (inflater.unconsumed_tail and not inflater.eof):
            raise too_large(limit, " after decompression")
        position += len(chunk) - len(inflater.unused_data)
    return position
