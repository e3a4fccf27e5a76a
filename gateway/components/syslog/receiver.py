"""Syslog receivers: TCP (RFC 6587 octet counting or newline framing) and UDP.

TCP framing is decided per message: a digit starts an octet count
(`LEN SP MSG`), `<` starts a newline-terminated message. A message over
`max_message_kib` is refused and skipped (up to its declared end, or its next
newline) without closing the connection; a malformed octet count closes it,
since the stream can no longer be framed. Messages are batched per sender and
handed to the pipeline every `flush_interval` or `max_batch` messages; syslog
has no acknowledgement, so a crash can lose what was read since the last
flush (at most `flush_interval`), never what reached the spool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from telemetry_gateway.gateway.components.syslog.config import SyslogConfig
from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.receivers.callers import stream_caller, stream_subject
from telemetry_gateway.gateway.router import DEFAULT_TENANT
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.self_metrics import SelfMetrics

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline

log = logging.getLogger(__name__)


class _Batcher:
    """Per-sender buffers flushed to the pipeline on size or time."""

    def __init__(self, pipeline: IngestPipeline, telemetry: SelfMetrics, config: SyslogConfig) -> None:
        self.pipeline = pipeline
        self.telemetry = telemetry
        self.config = config
        self.buffers: dict[str, list[bytes]] = {}
        self._task: asyncio.Task | None = None
        self._refusals = RateLimitedLog(log)

    def add(self, source: str, message: bytes) -> None:
        buffer = self.buffers.setdefault(source, [])
        buffer.append(message)
        if len(buffer) >= self.config.max_batch:
            asyncio.get_running_loop().create_task(self.flush(source))

    def refuse(self, reason: str, source: str, why: str) -> None:
        """A message refused before it is parsed: counted under `reason`, and logged (rate-limited) with why."""
        self.telemetry.rejected("syslog", DEFAULT_TENANT, reason, 1)
        self._refusals.warning(f"syslog-{reason}", "syslog from %s: 1 message refused (%s): %s", source, reason, why)

    async def flush(self, source: str) -> None:
        messages = self.buffers.pop(source, [])
        if not messages:
            return
        try:
            await self.pipeline.ingest("syslog", messages, stream_caller(source), source)
        except GatewayError as exc:  # once per kind every few seconds: a refused sender keeps sending
            self._refusals.warning(f"syslog-{type(exc).__name__}", "%d syslog messages from %s not kept: %s",
                                   len(messages), source, exc)
            self.telemetry.rejected("syslog", DEFAULT_TENANT, type(exc).__name__, len(messages))

    async def flush_all(self) -> None:
        await asyncio.gather(*(self.flush(source) for source in list(self.buffers)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            await self.flush_all()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, batcher: _Batcher, limit: int) -> None:
        self.batcher = batcher
        self.limit = limit

    def datagram_received(self, data: bytes, addr) -> None:
        source = f"syslog-udp:{addr[0]}"
        if len(data) > self.limit:
            self.batcher.refuse("too_large", source, f"a {len(data)}-byte datagram is over max_message_kib")
            return
        self.batcher.add(source, data)


class SyslogReceiver:
    def __init__(self, config: SyslogConfig, pipeline: IngestPipeline, telemetry: SelfMetrics) -> None:
        self.config = config
        self.limit = config.max_message_kib * 1024
        self.batcher = _Batcher(pipeline, telemetry, config)
        self._tcp: asyncio.base_events.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._flusher: asyncio.Task | None = None
        self._connections: set[asyncio.Task] = set()
        self._client_log = RateLimitedLog(log)

    @property
    def active(self) -> bool:
        return self.config.tcp.enabled or self.config.udp.enabled

    async def start(self) -> None:
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        self._flusher = loop.create_task(self.batcher.run(), name="syslog-flush")
        if self.config.tcp.enabled:
            host, port = self.config.tcp.endpoint.rsplit(":", 1)
            tls = self.config.tcp.tls
            handshake = {"ssl": tls.server_context(), "ssl_handshake_timeout": self.config.tcp.connections.request_timeout
                         } if tls else {}
            self._tcp = await asyncio.start_server(self._serve, host.strip("[]"), int(port), limit=self.limit + 64,
                                                   **handshake)
            log.info("syslog TCP listening on %s%s", self.config.tcp.endpoint, " (TLS)" if tls else "")
        if self.config.udp.enabled:
            host, port = self.config.udp.endpoint.rsplit(":", 1)
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self.batcher, self.limit), local_addr=(host.strip("[]"), int(port)))
            log.info("syslog UDP listening on %s", self.config.udp.endpoint)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = f"syslog-tcp:{writer.get_extra_info('peername', ('unknown',))[0]}"
        subject = stream_subject(writer.get_extra_info("ssl_object"))
        if subject:
            source += f"#{subject}"  # the caller's identity travels with its messages to the pipeline
        limits = self.config.tcp.connections
        if len(self._connections) >= limits.max_connections:
            self._client_log.warning("busy", "syslog: %d connections open, refusing %s (max_connections)",
                                     len(self._connections), source)
            writer.close()
            return
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await self._read_messages(reader, source, limits.idle_timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:
            self._client_log.warning("idle", "closing syslog connection from %s: idle for %gs", source, limits.idle_timeout)
        except (FramingError, asyncio.LimitOverrunError) as exc:
            why = exc if isinstance(exc, FramingError) else "octet count is not a number"
            self.batcher.refuse("framing", source, f"{why}; closing the connection")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _read_messages(self, reader: asyncio.StreamReader, source: str, idle_s: float) -> None:
        while True:
            # Each message, from its first byte to its last, must arrive within idle_s.
            async with asyncio.timeout(idle_s):
                first = await reader.read(1)
                if not first:
                    return
                if first.isdigit():
                    await self._octet_counted(reader, first, source)
                elif first not in b"\r\n":
                    await self._newline_framed(reader, first, source)

    async def _octet_counted(self, reader: asyncio.StreamReader, first: bytes, source: str) -> None:
        digits = first + await reader.readuntil(b" ")
        if len(digits) > 11 or not digits[:-1].isdigit():
            raise FramingError("octet count is not a number")
        length = int(digits[:-1])
        if length > self.limit:
            self.batcher.refuse("too_large", source, f"an octet count of {length} is over max_message_kib")
            while length > 0:  # skip it without holding it in memory
                chunk = await reader.read(min(length, 1 << 16))
                if not chunk:
                    return
                length -= len(chunk)
            return
        self.batcher.add(source, await reader.readexactly(length))

    async def _newline_framed(self, reader: asyncio.StreamReader, first: bytes, source: str) -> None:
        try:
            line = first + await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self.batcher.refuse("too_large", source, "a line over max_message_kib")
            await _skip_line(reader)
            return
        except asyncio.IncompleteReadError as exc:
            line = first + exc.partial
            if not exc.partial:
                return
        if len(line) > self.limit:
            self.batcher.refuse("too_large", source, "a line over max_message_kib")
            return
        self.batcher.add(source, line)

    async def shutdown(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._connections):
                task.cancel()
            await self._tcp.wait_closed()
        if self._udp is not None:
            self._udp.close()
        if self._flusher is not None:
            self._flusher.cancel()
        await self.batcher.flush_all()


class FramingError(Exception):
    pass


async def _skip_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
