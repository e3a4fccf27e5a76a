"""Connection limits for the aiohttp listeners.

aiohttp holds every connection it accepts until the peer closes it, and has no
cap on how many. `guard` wraps a runner's protocol factory so that:

* past `max_connections` open connections, a new one gets `503` with
  `Retry-After` and is closed (one line in the log per interval, not one per
  connection);
* a connection with no request in progress is closed after `idle_timeout`
  (aiohttp's keep-alive timer, which also runs before the first request);
* a request body must arrive within `request_timeout` (`read_body`): a
  Content-Length that is never delivered does not hold a handler forever.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import ClientPayloadError, web

from telemetry_gateway.gateway.config_base import ConnectionLimits
from telemetry_gateway.gateway.errors import BadRequest, RequestTimeout
from telemetry_gateway.gateway.receivers.body import too_large
from telemetry_gateway.gateway.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_client_log = RateLimitedLog(log)
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
         b"Connection: close\r\nContent-Length: 36\r\n\r\ntoo many connections; retry later\r\n\r\n")


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_BUSY)
        transport.close()


class _GuardedServer:
    """Stands in for the runner's web.Server: counts connections before handing them over."""

    def __init__(self, inner: web.Server, limits: ConnectionLimits, name: str) -> None:
        self._inner = inner
        self._limits = limits
        self._name = name
        self._log = RateLimitedLog(log)

    def __call__(self) -> asyncio.Protocol:
        if len(self._inner.connections) >= self._limits.max_connections:
            self._log.warning("busy", "%s: %d connections open, refusing more (max_connections)",
                              self._name, len(self._inner.connections))
            return _Refuse()
        return self._inner()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


async def serve(app: web.Application, endpoint: str, limits: ConnectionLimits, name: str,
                tls: TlsConfig | None = None, reuse_port: bool = False, **kwargs) -> web.AppRunner:
    """Set up and start a runner for `app` on `endpoint`, under `limits`, over TLS when configured;
    `reuse_port` lets listener workers share the port."""
    # lingering_time: after refusing a body, aiohttp reads what is left of it for this long before closing.
    app_runner = web.AppRunner(app, keepalive_timeout=limits.idle_timeout, access_log=None,
                               lingering_time=min(2.0, limits.request_timeout), **kwargs)
    await app_runner.setup()
    app_runner._server = _GuardedServer(app_runner.server, limits, name)  # aiohttp has no hook for this
    host, port = endpoint.rsplit(":", 1)
    context = tls.server_context() if tls is not None else None
    await web.TCPSite(app_runner, host.strip("[]"), int(port), ssl_context=context, reuse_port=reuse_port or None).start()
    return app_runner


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The body, bounded in size and in time."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read(request, limit)
    except TimeoutError:
        _client_log.warning("slow", "%s %s: body not received within %gs", request.remote, request.path, timeout_s)
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g}s") from None
    except (ConnectionError, ClientPayloadError) as exc:
        # The answer cannot reach a client that left; it is for the log and the request counter.
        _client_log.warning("gone", "%s %s: client went away mid-body (%s)", request.remote, request.path, exc)
        raise BadRequest("the client closed the connection before sending the whole body") from None
    if request.content_length is not None and len(body) != request.content_length:
        raise BadRequest("request body is shorter than its Content-Length")
    return body


async def _read(request: web.Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
