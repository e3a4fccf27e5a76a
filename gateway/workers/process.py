"""A listener worker process: the OTLP gRPC and HTTP listeners (with remote write, Zipkin and JSON
lines on the HTTP one), each request handed to the gateway process over the link.

    python -m telemetry_gateway.gateway.workers.process <link descriptor> <index>   (config JSON on stdin)

Started by `pool.ListenerWorkers`, never by hand. The listeners are the same
classes the gateway runs in its own process; only their pipeline and their
request counter are stand-ins that ask the gateway process. SIGTERM or SIGINT
stops taking connections and finishes the requests in flight; so does the
gateway process closing the link, which leaves nobody to hand requests to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from telemetry_gateway.adapters.base import AcceptWindow
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata
from telemetry_gateway.gateway.access import Credentials
from telemetry_gateway.gateway.adapting import Adapted, WorkerAdapter
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.components import FORMATS, listener_routes
from telemetry_gateway.gateway.components.otlp.component import service as otlp_listeners
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.memory import MemoryLimiter
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.stages import Chain
from telemetry_gateway.gateway.tenants import Tenants, TenantState, attribute_sets
from telemetry_gateway.gateway.workers.link import MainLink

log = logging.getLogger(__name__)
NS = 1_000_000_000


@dataclass(frozen=True)
class Admitted:
    """A request the gateway process let in and holds the admission of, under `number`."""

    number: int
    tenant: str
    credentials: Credentials


class RemotePipeline:
    """What the listeners call on `IngestPipeline`, answered by the gateway process. Formats a worker
    may adapt (`Format.in_workers`) are adapted here, on a thread of their own, and go over as rows."""

    def __init__(self, link: MainLink, adapter: WorkerAdapter, memory: MemoryLimiter) -> None:
        self.link = link
        self.adapter = adapter
        self.memory = memory  # what this worker holds while it adapts and waits: limits.max_memory_mib each
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="adapter")

    async def admit_request(self, format_name: str, caller: Caller, credentials: Credentials) -> Admitted:
        answer = await self.link.call({"op": "admit", "format": format_name, "caller": asdict(caller),
                                       "credentials": asdict(credentials)})
        return Admitted(answer["admission"], answer["tenant"], credentials)

    async def ingest(self, format_name: str, payload: bytes, caller: Caller, source_id: str = "",
                     credentials: Credentials | None = None, admission: Admitted | None = None) -> IngestReport:
        fmt = FORMATS[format_name]
        credentials = credentials or (admission.credentials if admission is not None else Credentials())
        header = {"format": format_name, "caller": asdict(caller), "credentials": asdict(credentials),
                  "source_id": source_id}
        if not fmt.in_workers:
            header.update(op="ingest", admission=admission.number if admission is not None else None)
            return IngestReport(**(await self.link.call(header, bytes(payload)))["report"])
        admission = admission or await self.admit_request(format_name, caller, credentials)
        with self.memory.hold(fmt.size(payload), admission.tenant):
            adapted, body = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._adapt, fmt, payload, caller, admission.tenant, source_id)
            header.update(adapted.header(), op="rows", tenant=admission.tenant, admission=admission.number)
            return IngestReport(**(await self.link.call(header, body))["report"])

    def _adapt(self, fmt, payload, caller: Caller, tenant: str, source_id: str) -> tuple[Adapted, bytes]:
        adapted = self.adapter.adapt(fmt, payload, caller, tenant, source_id)
        return adapted, adapted.body()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


class RemoteCounters:
    """The listeners' and the adapter's counters, kept by the gateway process (its /metrics)."""

    def __init__(self, link: MainLink) -> None:
        self.link = link

    def request(self, transport: str, format_: str, outcome: str) -> None:
        self.link.note({"op": "count", "transport": transport, "format": format_, "outcome": outcome})

    def rejected(self, format_: str, tenant: str, reason: str, n: int) -> None:
        self.link.note({"op": "rejected", "format": format_, "tenant": tenant, "reason": reason, "n": n})


def tenant_states(config: GatewayConfig):
    """Per-tenant attribute sets built as the gateway process builds them: same names, same limits."""
    def build(tenant: str) -> TenantState:
        sets = attribute_sets(config)
        return TenantState(tenant, sets, PrometheusMetadata(limits=sets.limits), Chain([]))

    return Tenants(build).get


async def serve(config: GatewayConfig, descriptor: int) -> None:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=descriptor))
    link = MainLink(reader, writer)
    reading = asyncio.get_running_loop().create_task(link.run(), name="link")
    counters = RemoteCounters(link)
    window = AcceptWindow(int(config.limits.max_age * NS), int(config.limits.max_future * NS))
    memory = MemoryLimiter(config.limits.max_memory_mib << 20, config.limits.retry_after)
    pipeline = RemotePipeline(link, WorkerAdapter(Finalizer(window), tenant_states(config), counters), memory)
    listeners = otlp_listeners(config.receivers.otlp, pipeline, counters,
                               listener_routes(config, pipeline, counters), shared_port=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    for listener in listeners:
        await listener.start()
    link.note({"op": "ready"})
    closed = asyncio.ensure_future(link.closed.wait())
    await asyncio.wait({asyncio.ensure_future(stop.wait()), closed}, return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        log.error("the gateway process closed the link; stopping")
    await asyncio.gather(*(listener.shutdown() for listener in listeners))
    pipeline.close()
    reading.cancel()


def main() -> None:
    descriptor, index = int(sys.argv[1]), int(sys.argv[2])
    config = GatewayConfig.model_validate_json(sys.stdin.buffer.read())
    logging.basicConfig(level=config.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    from telemetry_gateway.gateway.cli import tune_process

    tune_process()
    asyncio.run(serve(config, descriptor))


if __name__ == "__main__":
    main()
