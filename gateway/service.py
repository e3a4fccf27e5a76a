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

from telemetry_gateway.adapters.otlp import metrics as otlp_metrics
from telemetry_gateway.adapters.prometheus import remote_write
from telemetry_gateway.gateway.admin import AdminServer
from telemetry_gateway.gateway.policy_watch import PolicyWatch
from telemetry_gateway.gateway.components import COMPONENTS, config_of, listener_routes
from telemetry_gateway.gateway.components.otlp.component import COMPONENT as OTLP
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.pipeline import IngestPipeline
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.running import RUNTIME_FILE, TOKEN_FILE
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.workers.pool import ListenerWorkers
from telemetry_gateway.policies.load import PolicyError, load_policy

log = logging.getLogger(__name__)


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.telemetry = SelfMetrics()
        self.stores = RegionStores(config.store)
        policy = load_policy(config.policy.file, list(config.store.regions)) if config.policy.file else None
        if policy is not None and policy.policy.pollers_tenant is None and _polls(config):
            raise PolicyError(str(config.policy.file), ["pollers_tenant: pollers are configured, so the policy must "
                                                        "name the tenant that owns what they collect"])
        self.pipeline = IngestPipeline(config, self.stores, self.telemetry, policy)
        self.policy_watch = PolicyWatch(config.policy, list(config.store.regions), self.pipeline.access,
                                        self.telemetry) if policy is not None else None
        self.services = self._build_services()
        self._token = secrets.token_urlsafe(32)
        workers = [s for s in self.services if isinstance(s, ListenerWorkers)]
        self.admin = AdminServer(config.admin, self.pipeline, self._token,
                                 workers[0].health if workers else list)
        self._stopped = False
        self._runtime_written = False  # only the gateway that wrote the admin details removes them

    def _build_services(self) -> list:
        """Every registered component's listeners and pollers; HTTP routes join the shared HTTP listener.
        With listener workers, they serve the OTLP listeners and this process answers them."""
        routes = listener_routes(self.config, self.pipeline, self.telemetry)
        workers = self.config.receivers.otlp.workers
        services, self.pollers = [ListenerWorkers(self.config, self.pipeline, self.telemetry)] if workers else [], []
        for c in COMPONENTS:
            if c.service is None or (workers and c is OTLP):
                continue
            extra = {"location": self.config.pollers.location} if c.section == "pollers" else {}
            built = c.service(config_of(self.config, c), self.pipeline, self.telemetry, routes, **extra)
            services += built
            if c.section == "pollers":
                self.pollers += built
        return services

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
        if self.config.admin.tls is not None:
            info["admin_cert"] = str(self.config.admin.tls.cert_file.resolve())
        write_private(self.runtime_dir / RUNTIME_FILE, json.dumps(info))
        self._runtime_written = True
        await self.admin.start()
        if self.policy_watch is not None:
            self.policy_watch.start()
        for service in self.services:
            await service.start()
        if otlp_metrics.native_number_points is None or remote_write.native_write_request is None:
            log.warning("the compiled walkers are not installed (adapters/otlp/native): OTLP gauges and sums and "
                        "remote write take the Python walks, about a third and three times more CPU per point; "
                        "deploy/setup-venv.sh builds them")
        log.info("gateway ready (admin on %s)", self.config.admin.endpoint)

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down: draining accepted data")
        if self.policy_watch is not None:
            self.policy_watch.stop()
        await self.admin.cancel_reads()
        # Receivers drain in-flight requests while the writers flush at once:
        # those requests are waiting for exactly that flush to be answered.
        for poller in self.pollers:
            await poller.shutdown()
        await asyncio.gather(*(s.shutdown() for s in self.services if s not in self.pollers), self.pipeline.drain())
        await self.pipeline.close()
        await self.admin.shutdown()
        # A gateway refused at start (the store is held by another) must not remove the holder's details.
        for name in (TOKEN_FILE, RUNTIME_FILE) if self._runtime_written else ():
            (self.runtime_dir / name).unlink(missing_ok=True)
        await asyncio.to_thread(self.stores.close)
        log.info("stopped")


def _polls(config: GatewayConfig) -> bool:
    return bool(config.pollers.scrape.targets or config.pollers.scrape.file_sd or config.pollers.probes.targets)


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
    if gateway.policy_watch is not None:
        loop.add_signal_handler(signal.SIGHUP, gateway.policy_watch.reload_now)
    try:
        await gateway.start()
        await stop.wait()
    finally:
        await gateway.shutdown()
