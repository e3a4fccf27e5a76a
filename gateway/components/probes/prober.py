"""The built-in synthetic prober: HTTP and TCP checks with phase timings.

Output is the same probe series blackbox_exporter results map to
(`adapters.probes`). HTTP phases come from aiohttp's tracing hooks: resolve
(DNS), connect (TCP, and TLS for https), processing (request sent to
response headers) and transfer (the body). TCP probes time resolve and
connect. A probe fails on timeout, connection error, or an HTTP status
outside `expect_status` (default 2xx and 3xx).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp

from telemetry_gateway.adapters.probes import ProbeResult, add_probe
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.components.probes.config import ProbeTarget, ProbesConfig
from telemetry_gateway.gateway.components.samples import Samples
from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from telemetry_gateway.gateway.pipeline import IngestPipeline

log = logging.getLogger(__name__)


def _tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    def mark(name: str):
        async def hook(session, context, params):
            context.trace_request_ctx.marks[name] = time.perf_counter()
        return hook

    for name in ("dns_resolvehost_start", "dns_resolvehost_end", "connection_create_start",
                 "connection_create_end", "request_headers_sent", "request_end"):
        getattr(trace, f"on_{name}").append(mark(name))
    return trace


def _phases(marks: dict[str, float], done: float) -> dict[str, float]:
    phases = {}
    # An IP literal needs no lookup: resolve is then 0, as blackbox_exporter reports it.
    resolve = marks.get("dns_resolvehost_end", 0) - marks.get("dns_resolvehost_start", 0)
    if "connection_create_end" in marks:
        phases["resolve"] = resolve
        phases["connect"] = marks["connection_create_end"] - marks["connection_create_start"] - resolve
    if "request_end" in marks and "request_headers_sent" in marks:
        phases["processing"] = marks["request_end"] - marks["request_headers_sent"]
        phases["transfer"] = done - marks["request_end"]
    return phases


class Prober:
    def __init__(self, config: ProbesConfig, location: str, pipeline: IngestPipeline) -> None:
        self.config = config
        self.location = location
        self.pipeline = pipeline
        self._errors = RateLimitedLog(log)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for target in self.config.targets:
            self._tasks.append(asyncio.get_running_loop().create_task(self._loop(target), name=f"probe-{target.target}"))

    async def _loop(self, target: ProbeTarget) -> None:
        while True:
            started = time.monotonic()
            try:
                result = await self.probe(target)
                samples = Samples([], lambda _: None, lambda rows: add_probe(rows, result, "probes"))
                await self.pipeline.ingest("probes", samples, Caller("poller", self.location), f"probe:{self.location}")
            except GatewayError as exc:
                log.warning("probe result for %s not kept: %s", target.target, exc)
            except Exception:  # a bug must not end this probe for good: log it, go on
                self._errors.log(logging.ERROR, target.target, "probing %s failed unexpectedly", target.target,
                                 exc_info=True)
            await asyncio.sleep(max(0.0, self.config.interval - (time.monotonic() - started)))

    async def probe(self, target: ProbeTarget) -> ProbeResult:
        time_ns = time.time_ns()
        started = time.perf_counter()
        try:
            if target.kind == "http":
                ok, phases, status = await asyncio.wait_for(self._http(target), self.config.timeout)
            else:
                ok, phases, status = await asyncio.wait_for(self._tcp(target), self.config.timeout)
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.info("probe %s failed: %s", target.target, exc)
            ok, phases, status = False, {}, None
        return ProbeResult(target.target, target.module or target.kind, target.kind, self.location, time_ns, ok,
                           time.perf_counter() - started, phases, status, dict(target.labels))

    async def _http(self, target: ProbeTarget):
        marks: dict[str, float] = {}
        async with aiohttp.ClientSession(trace_configs=[_tracing()]) as session:
            async with session.get(target.target, trace_request_ctx=SimpleNamespace(marks=marks),
                                   allow_redirects=False) as response:
                await response.read()
                status = response.status
                done = time.perf_counter()
        ok = status in target.expect_status if target.expect_status else 200 <= status < 400
        return ok, _phases(marks, done), status

    async def _tcp(self, target: ProbeTarget):
        host, port = target.target.rsplit(":", 1)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        infos = await loop.getaddrinfo(host.strip("[]"), int(port), type=1)
        t1 = time.perf_counter()
        _, writer = await asyncio.open_connection(infos[0][4][0], int(port))
        t2 = time.perf_counter()
        writer.close()
        return True, {"resolve": t1 - t0, "connect": t2 - t1}, None

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
