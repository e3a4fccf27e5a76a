"""The channel between a listener worker and the gateway process: framed messages on a socket pair.

A frame is a 4-byte big-endian length of its JSON header, a 4-byte length
of its body, the header, then the body (a request's payload, or nothing):

    +--------+--------+---------------------+------------------+
    | hlen   | blen   | header (JSON, hlen) | body (blen)      |
    +--------+--------+---------------------+------------------+

The worker asks (`op`: admit, ingest) under a number `id`; the gateway
answers under the same number, with `admission` (a number the body then
comes under), `report` or `error`. `count` and `ready` go one way and get
no answer. The socket pair is made by the
gateway and inherited by the worker alone, so no other process can
speak on it: credentials cross it, and it is the only way into the
pipeline besides the listeners themselves.
"""

from __future__ import annotations

import asyncio
import json
import struct

from telemetry_gateway.gateway import errors
from telemetry_gateway.gateway.errors import GatewayError, StoreUnavailable, Throttled
from telemetry_gateway.gateway.quotas import TenantThrottled

_HEAD = struct.Struct(">II")
MAX_HEADER = 1 << 20


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict, bytes]:
    """The next frame; raises asyncio.IncompleteReadError at the end of the stream."""
    header_len, body_len = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if header_len > MAX_HEADER:
        raise ValueError(f"frame header of {header_len} bytes")
    header = json.loads(await reader.readexactly(header_len))
    body = await reader.readexactly(body_len) if body_len else b""
    return header, body


def frame(header: dict, body: bytes = b"") -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_HEAD.pack(len(encoded), len(body)), encoded, body))


def error_header(exc: BaseException) -> dict:
    """What the worker needs to answer its client as the gateway process would have."""
    if not isinstance(exc, GatewayError):
        return {"error": "GatewayError", "message": f"internal error: {type(exc).__name__}: {exc}"}
    out = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, Throttled):
        out["retry_after"] = exc.retry_after_s
    return out


def error_of(header: dict) -> GatewayError:
    """The gateway process's error, rebuilt in the worker (only the gateway's own error classes)."""
    name = str(header.get("error"))
    kind = TenantThrottled if name == TenantThrottled.__name__ else getattr(errors, name, None)
    message = str(header.get("message", ""))
    if not (isinstance(kind, type) and issubclass(kind, GatewayError)):
        return GatewayError(message)
    if issubclass(kind, Throttled):
        return kind(message, float(header.get("retry_after", 1.0)))
    try:
        return kind(message)
    except TypeError:  # a class that needs more than a message (PartlyStored) never reaches a receiver
        return GatewayError(message)


class MainLink:
    """The worker's end: numbered calls, answers matched to them, one-way notes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future] = {}
        self._next = 0
        self.closed = asyncio.Event()

    async def call(self, header: dict, body: bytes = b"") -> dict:
        """Send and wait for the answer; raises the gateway's error, or StoreUnavailable when it is gone."""
        if self.closed.is_set():
            raise StoreUnavailable("the gateway process is not answering; retry")
        self._next += 1
        number = self._next
        answer = self._pending[number] = asyncio.get_running_loop().create_future()
        try:
            self._writer.write(frame({**header, "id": number}, body))
            await self._writer.drain()
            reply = await answer
        finally:
            self._pending.pop(number, None)
        if "error" in reply:
            raise error_of(reply)
        return reply

    def note(self, header: dict) -> None:
        """One way, no answer: a counter, or that the listeners are up."""
        if not self.closed.is_set():
            self._writer.write(frame(header))

    async def run(self) -> None:
        """Hand answers to their callers until the gateway process closes its end."""
        try:
            while True:
                reply, _ = await read_frame(self._reader)
                waiter = self._pending.get(reply.get("id"))
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            gone = StoreUnavailable("the gateway process went away before answering; retry")
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(gone)
