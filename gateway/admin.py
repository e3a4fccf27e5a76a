"""Admin listener: /healthz, /readyz, /metrics and the SQL read path.

`POST /api/v1/sql` runs one read-only statement on a region's store. It is
how `telemetry-gateway sql` reaches an embedded store that this process
holds. It needs the bearer token the gateway writes, mode 0600, to
`<store.path>/admin.token` at start: whoever can read the data directory can
query, nobody else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from aiohttp import web

from gateway.config import AdminConfig
from gateway.errors import GatewayError, QueryRefused
from gateway.receivers import status
from gateway.store.regions import RegionStores
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)
FORMATS = {"CSV", "CSVWithNames", "TSV", "TSVWithNames", "JSON", "JSONEachRow", "JSONCompact", "Pretty", "PrettyCompact", "Parquet", "Arrow", "Markdown", "Vertical"}


class AdminServer:
    def __init__(self, config: AdminConfig, stores: RegionStores, telemetry: Telemetry, token: str) -> None:
        self.config = config
        self.stores = stores
        self.telemetry = telemetry
        self._token = token
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/v1/sql", self.sql)
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
        return web.Response(body=self.telemetry.exposition(), content_type="text/plain", charset="utf-8")

    async def sql(self, request: web.Request) -> web.Response:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(supplied, self._token.encode()):
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
