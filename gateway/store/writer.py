"""Batching writer: many small Arrow tables in, few large inserts out.

One `BatchWriter` per (region, table). `write()` returns once the rows are in
the store, so a request is acknowledged only after its data is stored (until
the spool of issue 3 takes that role). A flush happens at `max_rows` or
`max_delay` after the oldest waiting rows, whichever comes first: ClickHouse
pays per insert (a part each), so many small inserts cost far more than a few
large ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from gateway.errors import Throttled
from gateway.store.base import RegionStore
from gateway.telemetry import Telemetry
from schema import Table


@dataclass
class _Pending:
    rows: pa.Table
    batch_id: str
    done: asyncio.Future
    since: float


def batch_token(batch_ids: list[str]) -> str:
    """Deterministic insert_deduplication_token for a set of request batches."""
    return hashlib.sha256("\n".join(batch_ids).encode()).hexdigest()[:32]


class BatchWriter:
    def __init__(
        self,
        store: RegionStore,
        table: Table,
        executor: ThreadPoolExecutor,
        telemetry: Telemetry,
        max_rows: int,
        max_delay_s: float,
        max_pending_rows: int,
        retry_after_s: float = 1.0,
    ) -> None:
        self.store = store
        self.table = table
        self._executor = executor
        self._telemetry = telemetry
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._max_pending = max_pending_rows
        self._retry_after = retry_after_s
        self._queue: list[_Pending] = []
        self._queued_rows = 0
        self._inflight_rows = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None

    @property
    def pending_rows(self) -> int:
        return self._queued_rows + self._inflight_rows

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"writer-{self.store.region}-{self.table.name}")

    async def write(self, rows: pa.Table, batch_id: str) -> None:
        """Wait until `rows` are stored; raise Throttled when too much is waiting."""
        if rows.num_rows == 0:
            return
        if self._closing:
            raise Throttled("the gateway is shutting down", self._retry_after)
        if self.pending_rows + rows.num_rows > self._max_pending:
            raise Throttled(
                f"{self.pending_rows} rows are waiting for the {self.store.region} store; retry later",
                self._retry_after,
            )
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, batch_id, done, time.monotonic()))
        self._queued_rows += rows.num_rows
        self._report_depth()
        self._wake.set()
        await asyncio.shield(done)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                if self._closing:
                    return
                continue
            await self._gather()
            await self._flush()
            if self._queue or self._closing:
                self._wake.set()

    async def _gather(self) -> None:
        """Wait until a full batch is queued or the oldest rows have waited max_delay."""
        deadline = self._queue[0].since + self._max_delay
        while self._queued_rows < self._max_rows and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        taken, size = [], 0
        while self._queue and (not taken or size + self._queue[0].rows.num_rows <= self._max_rows):
            item = self._queue.pop(0)
            taken.append(item)
            size += item.rows.num_rows
        self._queued_rows -= size
        self._inflight_rows += size
        return taken

    async def _flush(self) -> None:
        taken = self._take()
        if not taken:
            return
        rows = pa.concat_tables([p.rows for p in taken])
        token = batch_token([p.batch_id for p in taken])
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.store.insert, self.table, rows, token)
        except Exception as exc:
            self._telemetry.store_failed(self.store.region, self.table.name, type(exc).__name__)
            for p in taken:
                if not p.done.done():
                    p.done.set_exception(exc)
        else:
            self._telemetry.stored(self.store.region, self.table.name, rows.num_rows, time.monotonic() - started)
            for p in taken:
                if not p.done.done():
                    p.done.set_result(None)
        finally:
            self._inflight_rows -= rows.num_rows
            self._report_depth()

    def _report_depth(self) -> None:
        self._telemetry.queue_depth(self.store.region, self.table.name, self.pending_rows)

    async def close(self) -> None:
        """Stop taking rows and store everything already accepted."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        while self._queue:
            await self._flush()
