"""Admin listener: /healthz, /readyz, /metrics and the SQL read path.

`POST /api/v1/sql` runs one read-only statement on a region's store, and
`POST /api/v1/deadletter/redrive` sends dead-lettered batches to the store
again. They are how the CLI reaches an embedded store that this process
holds. Both need the bearer token the gateway writes, mode 0600, to
`<store.path>/admin.token` at start: whoever can read the data directory can
use them, nobody else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid

from aiohttp import web

from telemetry_gateway.gateway.config import AdminConfig, QueryConfig
from telemetry_gateway.gateway.errors import GatewayError, QueryRefused
from telemetry_gateway.gateway.pipeline import IngestPipeline
from telemetry_gateway.gateway.receivers import connections, status
from telemetry_gateway.gateway.store.base import RegionStore
from telemetry_gateway.gateway.store.reads import ReadLimits
from telemetry_gateway.gateway.store.regions import RegionStores

log = logging.getLogger(__name__)


class AdminServer:
    def __init__(self, config: AdminConfig, pipeline: IngestPipeline, token: str) -> None:
        self.config = config
        self.pipeline = pipeline
        self.stores = pipeline.stores
        self.telemetry = pipeline.telemetry
        self._token = token
        self._runner: web.AppRunner | None = None
        self.limits = read_limits(config.query)
        self._read_slots = asyncio.Semaphore(config.query.max_concurrent)
        self._reads: dict[str, RegionStore] = {}  # marker -> store, while the read runs

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/v1/sql", self.sql)
        app.router.add_post("/api/v1/deadletter/redrive", self.redrive)
        return app

    async def start(self) -> None:
        # handler_cancellation: a client that goes away cancels its handler, and so its read.
        self._runner = await connections.serve(self.app(), self.config.endpoint, self.config.connections, "admin",
                                               handler_cancellation=True)

    async def cancel_reads(self) -> None:
        """Kill every running read (at shutdown: a read must not hold the process)."""
        await asyncio.gather(*(self._cancel(marker) for marker in list(self._reads)))

    async def shutdown(self) -> None:
        await self.cancel_reads()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        problems = []
        for store in self.stores:
            try:
                await asyncio.wait_for(asyncio.to_thread(store.ping), 5)
            except Exception as exc:  # any failure means not ready; say which region
                problems.append(f"{store.region}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        problems += self.pipeline.health()
        if problems or not self.stores.stores:
            return web.Response(status=503, text="not ready\n" + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        if self.pipeline.spool is not None:
            self.telemetry.spool_bytes.set(self.pipeline.spool.pending_bytes)
        return web.Response(body=self.telemetry.exposition(), content_type="text/plain", charset="utf-8")

    def _authorized(self, request: web.Request) -> bool:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        return hmac.compare_digest(supplied, self._token.encode())

    async def redrive(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="missing or wrong admin token\n")
        try:
            ids = json.loads(await request.read())["ids"]
            assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)
        except (ValueError, KeyError, TypeError, AssertionError):
            return web.Response(status=400, text='body must be JSON {"ids": ["<batch id>", ...]}\n')
        results = {}
        for batch_id in ids:
            try:
                results[batch_id] = await self.pipeline.redrive(batch_id)
            except KeyError as exc:
                results[batch_id] = f"error: {exc.args[0]}"
            except GatewayError as exc:
                results[batch_id] = f"error: {exc}"
        return web.json_response(results)

    async def sql(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="missing or wrong admin token\n")
        try:
            body = json.loads(await request.read())
            sql, region, fmt = body["sql"], body.get("region"), body.get("format") or "PrettyCompact"
            if not all(isinstance(v, str) for v in (sql, fmt)) or not isinstance(region, str | None):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text='body must be JSON {"sql": ..., "region": ..., "format": ...}\n')
        try:
            async with self._read_slots:
                out = await self._read(region, sql, fmt)
        except GatewayError as exc:
            return web.Response(status=status.http_status(exc), text=f"{exc}\n")
        return web.Response(body=out, content_type="application/octet-stream")

    async def _read(self, region: str, sql: str, fmt: str) -> bytes:
        store = pick_store(self.stores, region, fmt)
        marker = f"read-{uuid.uuid4().hex}"
        self._reads[marker] = store
        try:
            return await asyncio.to_thread(run_read, store, sql, fmt, self.limits, marker)
        except asyncio.CancelledError:
            await self._cancel(marker)
            raise
        finally:
            self._reads.pop(marker, None)

    async def _cancel(self, marker: str) -> None:
        store = self._reads.get(marker)
        if store is None:
            return
        try:
            await asyncio.to_thread(store.cancel, marker)
        except GatewayError as exc:
            log.warning("could not cancel read %s: %s", marker, exc)


def read_limits(config: QueryConfig) -> ReadLimits:
    return ReadLimits(config.timeout, config.max_memory_mib << 20, config.max_result_rows, config.max_result_mib << 20)


def region_or_default(regions: list[str], region: str | None) -> str:
    """The region asked for; unnamed, `default`, or the only one configured."""
    if region is None:
        region = regions[0] if len(regions) == 1 else "default"
    if region not in regions:
        raise QueryRefused(f"no region named {region!r} (configured: {', '.join(regions)})")
    return region


def pick_store(stores: RegionStores, region: str | None, fmt: str) -> RegionStore:
    store = stores[region_or_default(list(stores.stores), region)]
    if fmt not in store.output_formats():
        raise QueryRefused(f"format {fmt!r} is not an output format of the store (see system.formats WHERE is_output)")
    return store


def run_read(store: RegionStore, sql: str, fmt: str, limits: ReadLimits, marker: str) -> bytes:
    """Guard and run one read statement; shared by the API and the CLI."""
    return store.read(store.guard_read(sql), fmt, limits, marker)
