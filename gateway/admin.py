"""Admin listener: /healthz, /readyz, /metrics and the SQL read path.

`POST /api/v1/sql` runs one read-only statement on a region's store, and
`POST /api/v1/deadletter/redrive` sends dead-lettered batches to the store
again. They are how the CLI reaches an embedded store that this process
holds. Both take the bearer token the gateway writes, mode 0600, to
`<store.path>/admin.token` at start: whoever can read the data directory can
use them, with no limit of tenant or region.

With an access policy, principals may read too: role admin as the admin
token does; read_raw and read_validated only their tenants' rows of their
role's tables, in their tenants' regions (`store.reads.ReadScope`). Every
read decision, allowed or refused, is audited.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from dataclasses import dataclass

from aiohttp import web

from telemetry_gateway.gateway.config import AdminConfig, QueryConfig
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.errors import GatewayError, PermissionDenied, QueryRefused, Unauthenticated
from telemetry_gateway.gateway.pipeline import IngestPipeline
from telemetry_gateway.gateway.receivers import connections, status
from telemetry_gateway.gateway.store.base import RegionStore
from telemetry_gateway.gateway.receivers.callers import http_caller, http_credentials
from telemetry_gateway.gateway.store.reads import ReadLimits, ReadScope
from telemetry_gateway.gateway.store.regions import RegionStores

log = logging.getLogger(__name__)


class AdminServer:
    def __init__(self, config: AdminConfig, pipeline: IngestPipeline, token: str, listeners_health=list) -> None:
        self.config = config
        self.pipeline = pipeline
        self.listeners_health = listeners_health  # problems of listeners in other processes (workers)
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
                                               self.config.tls, handler_cancellation=True)

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
        problems += self.pipeline.health() + self.listeners_health()
        if problems or not self.stores.stores:
            return web.Response(status=503, text="not ready\n" + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        if self.pipeline.spool is not None:
            self.telemetry.spool_bytes.set(self.pipeline.spool.pending_bytes)
        return web.Response(body=self.telemetry.exposition(), content_type="text/plain", charset="utf-8")

    def _reader(self, request: web.Request) -> Reader:
        """Who is reading and what they may see; raises Unauthenticated or PermissionDenied."""
        caller = http_caller(request)
        credentials = http_credentials(request)
        policy = self.pipeline.access.current
        if credentials.token and hmac.compare_digest(credentials.token.encode(), self._token.encode()):
            return Reader(_as(caller, "local-admin"), None, None, policy.version if policy else "")
        if policy is None:
            raise Unauthenticated("missing or wrong admin token")
        name, principal = policy.authenticate(credentials.token, caller.certificate_subject)
        caller = _as(caller, name)
        if "admin" in principal.roles:
            return Reader(caller, None, None, policy.version)
        if "read_raw" not in principal.roles and "read_validated" not in principal.roles:
            raise PermissionDenied("this principal may not read (it has no read role)")
        tenants = policy.tenants_for_read(principal, credentials.tenant)
        regions = frozenset().union(*(policy.tenant(t).regions for t in tenants))
        home = policy.tenant(tenants[0]).home_region if len(tenants) == 1 else None
        return Reader(caller, ReadScope(tenants, "read_raw" not in principal.roles), regions, policy.version, home)

    async def redrive(self, request: web.Request) -> web.Response:
        try:
            reader = self._reader(request)
            if reader.scope is not None:
                raise PermissionDenied("redrive needs the admin token or the admin role")
        except (Unauthenticated, PermissionDenied) as exc:
            return web.Response(status=status.http_status(exc), text=f"{exc}\n")
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
        try:
            reader = self._reader(request)
        except (Unauthenticated, PermissionDenied) as exc:
            policy = self.pipeline.access.current
            self.pipeline.audit.read_decided(http_caller(request), "", "", "refused", str(exc), "",
                                             policy.version if policy else "")
            return web.Response(status=status.http_status(exc), text=f"{exc}\n")
        try:
            body = json.loads(await request.read())
            sql, region, fmt = body["sql"], body.get("region"), body.get("format") or "PrettyCompact"
            if not all(isinstance(v, str) for v in (sql, fmt)) or not isinstance(region, str | None):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text='body must be JSON {"sql": ..., "region": ..., "format": ...}\n')
        tenants = ",".join(reader.scope.tenants) if reader.scope is not None else ""
        try:
            region = reader.region(region, list(self.stores.stores))
            async with self._read_slots:
                out = await self._read(region, sql, fmt, reader.scope)
        except GatewayError as exc:
            self.pipeline.audit.read_decided(reader.caller, tenants, region or "", "refused", str(exc), sql,
                                             reader.policy_version)
            return web.Response(status=status.http_status(exc), text=f"{exc}\n")
        self.pipeline.audit.read_decided(reader.caller, tenants, region, "allowed", "", sql, reader.policy_version,
                                         len(out))
        return web.Response(body=out, content_type="application/octet-stream")

    async def _read(self, region: str, sql: str, fmt: str, scope: ReadScope | None) -> bytes:
        store = pick_store(self.stores, region, fmt)
        marker = f"read-{uuid.uuid4().hex}"
        self._reads[marker] = store
        try:
            return await asyncio.to_thread(run_read, store, sql, fmt, self.limits, marker, scope)
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


def run_read(store: RegionStore, sql: str, fmt: str, limits: ReadLimits, marker: str,
             scope: ReadScope | None = None) -> bytes:
    """Guard and run one read statement; shared by the API and the CLI."""
    return store.read(store.guard_read(sql, scope), fmt, limits, marker, scope)


@dataclass(frozen=True)
class Reader:
    caller: Caller
    scope: ReadScope | None           # None: every tenant and region (admin token, admin role)
    regions: frozenset[str] | None    # regions a scoped reader may read
    policy_version: str
    home: str | None = None           # the region read when none is named (one tenant: its home)

    def region(self, asked: str | None, configured: list[str]) -> str:
        if self.regions is None:
            return region_or_default(configured, asked)
        region = asked or self.home
        if region is None:
            raise QueryRefused("name a region: this principal reads several tenants")
        if region not in self.regions:
            raise PermissionDenied("this principal may not read that region")
        return region


def _as(caller: Caller, principal: str) -> Caller:
    return Caller("admin", caller.peer, caller.certificate_subject, principal)
