"""Sinks: where routed batches go, and the promise made when `keep` returns.

`Sink.keep(batches)` returns once every batch is safe: durable in the spool,
or, without a spool, stored. It refuses all of them or none (the room is
checked once per call), so a request is never answered after part of it was
kept. A sink owns what happens after that: retries, store outages, dead
letters, replay after a crash.

`SpoolStoreSink` is the gateway's: spool, then one writer per (region,
table) into the regional ClickHouse stores. The edge agent's sink will be
"spool, then the upstream gateway"; the stages before it do not change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol

from telemetry_gateway.gateway.batch import Batch
from telemetry_gateway.gateway.deadletter import DeadLetters
from telemetry_gateway.gateway.errors import StoreUnavailable, Throttled
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.spool.spool import Recovery, Spool
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.store.writer import TableWriter, WriterSettings
from telemetry_gateway.schema import AUDIT_LOG, INGEST_LOG, TABLES, Table

log = logging.getLogger(__name__)


class Sink(Protocol):
    def start(self) -> None:
        """Begin delivering, starting with what an earlier run left behind."""

    def hold_for(self, name: str, consume: Callable[[Batch], None]) -> None:
        """Deliver batches held under `name` to `consume` instead of a store (before `start`)."""

    @property
    def holds(self) -> bool:
        """Whether held batches are durable (a spool), so a stage may hold rows across requests."""

    async def keep(self, batches: list[Batch]) -> None:
        """Return once every batch is safe; raise (keeping none) when that cannot be promised."""

    def health(self) -> list[str]:
        """Why accepted data is not being delivered; empty when it is."""

    @property
    def queued_bytes(self) -> int:
        """Bytes accepted and held in memory, not yet delivered (for the memory limiter)."""

    async def drain(self, timeout_s: float) -> None:
        """Deliver what is queued within the timeout; the rest stays durable for the next start."""

    async def close(self) -> None:
        """After drain: release files and threads. Idempotent."""


class SpoolStoreSink:
    def __init__(self, stores: RegionStores, spool: Spool | None, dead_letters: DeadLetters,
                 settings: WriterSettings, metrics: SelfMetrics, retry_after_s: float) -> None:
        self.stores = stores
        self.spool = spool
        self.dead_letters = dead_letters
        self.settings = settings
        self.metrics = metrics
        self.retry_after_s = retry_after_s
        self.writers: dict[tuple[str, str], TableWriter] = {}
        self._executors: list[ThreadPoolExecutor] = []
        self._closed = False
        self._holders: dict[str, Callable[[Batch], None]] = {}

    def hold_for(self, name: str, consume: Callable[[Batch], None]) -> None:
        """Batches with `hold == name` go to `consume` once durable (and on replay), not to a writer."""
        self._holders[name] = consume

    def start(self) -> None:
        """Start writers, then hand them what the spool still holds."""
        recovery = self.spool.open() if self.spool else None
        if self.spool:
            self.spool.start(asyncio.get_running_loop())
        for store in self.stores:
            # One thread per region: chDB serializes calls anyway, and a slow region must not hold up another.
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{store.region}")
            self._executors.append(executor)
            for table in TABLES:
                writer = TableWriter(store, table, executor, self.metrics, _settings_for(table, self.settings),
                                     self.spool, self.dead_letters)
                writer.start()
                self.writers[(store.region, table.name)] = writer
        if recovery is not None:
            self._resume(recovery)

    def _resume(self, recovery: Recovery) -> None:
        for name, damage in recovery.damage:
            log.warning("spool %s: cut bytes %d-%d (%s)", name, damage.start, damage.end, damage.reason)
        self.metrics.spool_cut.inc(recovery.cut_bytes)
        for intent, batches in recovery.intents:
            self._writer_for(intent.region, intent.table).replay(intent, batches)
        for batch in recovery.batches:
            self._destination(batch)(batch)
        replayed = len(recovery.batches) + sum(len(b) for _, b in recovery.intents)
        self.metrics.replayed.inc(replayed)
        if replayed or recovery.damage:
            log.info("spool: replaying %d batches (%d groups announced before the stop), cut %d damaged bytes",
                     replayed, len(recovery.intents), recovery.cut_bytes)

    def _writer_for(self, region: str, table: str) -> TableWriter:
        writer = self.writers.get((region, table))
        if writer is None:
            raise RuntimeError(f"the spool holds data for region {region!r}, which is no longer configured")
        return writer

    def health(self) -> list[str]:
        return [problem for w in self.writers.values() if (problem := w.health())]

    @property
    def queued_bytes(self) -> int:
        return sum(w.queued_bytes for w in self.writers.values())

    async def keep(self, batches: list[Batch]) -> None:
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        if self.spool is not None:
            self._check_room()
        await asyncio.gather(*(self._keep(batch) for batch in batches))

    def _check_room(self) -> None:
        if self.spool.pending_bytes >= self.spool.max_bytes:
            raise Throttled(f"the spool holds {self.spool.pending_bytes >> 20} MiB not yet stored "
                            f"(limit {self.spool.max_bytes >> 20} MiB)", self.retry_after_s)
        short = self.spool.disk_short()
        if short:
            raise Throttled(short, self.retry_after_s)

    @property
    def holds(self) -> bool:
        return self.spool is not None

    def _destination(self, batch: Batch) -> Callable[[Batch], None]:
        if batch.hold:
            return self._holders[batch.hold]
        return self._writer_for(batch.region, batch.table.name).submit

    async def _keep(self, batch: Batch) -> None:
        if self.spool is None:
            await self.writers[(batch.region, batch.table.name)].write(batch)
            return
        try:
            await self.spool.append_batch(batch, self._destination(batch), check_room=False)
        except OSError as exc:
            log.error("spool write failed: %s", exc)
            raise StoreUnavailable(f"the spool could not be written: {exc}") from None
        self.metrics.spool_bytes.set(self.spool.pending_bytes)

    async def drain(self, timeout_s: float) -> None:
        await asyncio.gather(*(w.close(timeout_s) for w in self.writers.values()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.spool is not None:
            await self.spool.close()
        for executor in self._executors:
            executor.shutdown(wait=True)


def _settings_for(table: Table, settings: WriterSettings) -> WriterSettings:
    if table is not INGEST_LOG and table is not AUDIT_LOG:
        return settings
    return replace(settings, max_delay_s=settings.log_max_delay_s)
