"""The gateway process: wiring and lifecycle.

`start()` opens the stores (applying migrations), then the pipeline (which
replays the spool), then the listeners. `shutdown()` is idempotent and runs
the other way round: stop taking requests and let in-flight ones finish while
the writers store what they can within `shutdown.drain_timeout`; what is left
stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from pathlib import Path

from telemetry_gateway.gateway.admin import AdminServer
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.pipeline import IngestPipeline
from telemetry_gateway.gateway.pollers.probe import Prober
from telemetry_gateway.gateway.pollers.scrape import ScrapePoller
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.receivers.otlp_grpc import OtlpGrpcReceiver
from telemetry_gateway.gateway.receivers.otlp_http import OtlpHttpReceiver
from telemetry_gateway.gateway.receivers.syslog import SyslogReceiver
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.telemetry import Telemetry

log = logging.getLogger(__name__)
TOKEN_FILE = "admin.token"
RUNTIME_FILE = "gateway.json"


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.telemetry = Telemetry()
        self.stores = RegionStores(config.store)
        self.pipeline = IngestPipeline(config, self.stores, self.telemetry)
        otlp = config.receivers.otlp
        self.grpc = OtlpGrpcReceiver(otlp.grpc, self.pipeline, self.telemetry) if otlp.grpc.enabled else None
        self.http = OtlpHttpReceiver(otlp.http, self.pipeline, self.telemetry) if otlp.http.enabled else None
        self.scrape = ScrapePoller(config.pollers.scrape, self.pipeline, config.pollers.location)
        self.prober = Prober(config.pollers.probes, config.pollers.location, self.pipeline)
        self.syslog = SyslogReceiver(config.receivers.syslog, self.pipeline, self.telemetry)
        self._token = secrets.token_urlsafe(32)
        self.admin = AdminServer(config.admin, self.pipeline, self._token)
        self._stopped = False

    @property
    def runtime_dir(self) -> Path:
        return self.config.store.path

    async def start(self) -> None:
        await asyncio.to_thread(self.stores.open)
        self.pipeline.start()
        # Before the admin listener answers, so a client never reads a stale token.
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.runtime_dir / TOKEN_FILE, self._token)
        info = {"pid": os.getpid(), "admin": self.config.admin.endpoint}
        write_private(self.runtime_dir / RUNTIME_FILE, json.dumps(info))
        for listener in (self.admin, self.grpc, self.http):
            if listener is not None:
                await listener.start()
        await self.syslog.start()
        await self.scrape.start()
        await self.prober.start()
        log.info("gateway ready (admin on %s)", self.config.admin.endpoint)

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down: draining accepted data")
        await self.admin.cancel_reads()
        # Receivers drain in-flight requests while the writers flush at once:
        # those requests are waiting for exactly that flush to be answered.
        await self.scrape.shutdown()
        await self.prober.shutdown()
        receivers = [r.shutdown() for r in (self.grpc, self.http, self.syslog) if r is not None]
        await asyncio.gather(*receivers, self.pipeline.drain())
        await self.pipeline.close()
        await self.admin.shutdown()
        for name in (TOKEN_FILE, RUNTIME_FILE):
            (self.runtime_dir / name).unlink(missing_ok=True)
        await asyncio.to_thread(self.stores.close)
        log.info("stopped")


def _quiet_loop_errors(limited: RateLimitedLog):
    """asyncio reports accept() failures (EMFILE at the descriptor limit) once per
    attempt, with a traceback: one line per kind per interval instead."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        error = context.get("exception")
        kind = f"{context.get('message', '')}:{type(error).__name__}"
        limited.log(logging.ERROR, kind, "event loop: %s", context.get("message", "error"), exc_info=error or False)

    return handle


async def serve(config: GatewayConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_loop_errors(RateLimitedLog(log)))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        await stop.wait()
    finally:
        await gateway.shutdown()
