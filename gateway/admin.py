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

from aiohttp import web

from gateway.config import AdminConfig
from gateway.errors import GatewayError, QueryRefused
from gateway.pipeline import IngestPipeline
from gateway.receivers import status
from gateway.store.regions import RegionStores

log = logging.getLogger(__name__)
FORMATS = {"CSV", "CSVWithNames", "TSV", "TSVWithNames", "JSON", "JSONEachRow", "JSONCompact", "Pretty", "PrettyCompact", "Parquet", "Arrow", "Markdown", "Vertical"}


class AdminServer:
    def __init__(self, config: AdminConfig, pipeline: IngestPipeline, token: str) -> None:
        self.config = config
        self.pipeline = pipeline
        self.stores = pipeline.stores
        self.telemetry = pipeline.telemetry
        self._token = token
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/v1/sql", self.sql)
        app.router.add_post("/api/v1/deadletter/redrive", self.redrive)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        host, port = self.config.endpoint.rsplit(":", 1)
        await web.TCPSite(self._runner, host.strip("[]"), int(port)).start()

    async def shutdown(self) -> None:
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
            sql, region, fmt = body["sql"], body.get("region") or "default", body.get("format") or "PrettyCompact"
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text='body must be JSON {"sql": ..., "region": ..., "format": ...}\n')
        try:
            out = await asyncio.to_thread(run_read, self.stores, region, sql, fmt)
        except GatewayError as exc:
            return web.Response(status=status.http_status(exc), text=f"{exc}\n")
        return web.Response(body=out, content_type="application/octet-stream")


def run_read(stores: RegionStores, region: str, sql: str, fmt: str) -> bytes:
    """Guard and run one read statement on a region; shared by the API and the CLI."""
    if fmt not in FORMATS:
        raise QueryRefused(f"format {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    if region not in stores.stores:
        raise QueryRefused(f"no region named {region!r} (configured: {', '.join(stores.stores)})")
    store = stores[region]
    return store.query(store.guard_read(sql), fmt)
