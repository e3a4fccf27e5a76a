"""Store writer: many accepted batches in, few large inserts out, each exactly once.

One `TableWriter` per (region, table). Batches queue up and leave as one
insert when `max_rows` are waiting or the oldest has waited `max_delay`:
ClickHouse pays per insert (a part each, merged later), so a few large
inserts cost far less than many small ones.

With the spool (the default), a batch arrives here once it is durable and the
client already has its answer. Each group is announced in the spool (INTENT
with its dedup token) before the insert and closed (DONE) after, so a replay
after a crash inserts the same group under the same token and ClickHouse
stores it once. Retryable failures are retried under the retry policy until
shutdown; a group the store refuses permanently is split, and a single batch
still refused goes to the dead-letter area, so one poison batch never holds
up the rest.

Nothing ends the writer but shutdown. An error that is not the store's
(an Arrow error building the insert, a bug) counts as a permanent refusal of
that group, so it too is split and dead-lettered, on the live path and on
replay alike. While inserts fail, `health()` names the table and the reason,
and /readyz reports it.

Without the spool, `write()` returns when the rows are stored and errors go
back to the client, which retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from telemetry_gateway.gateway.deadletter import DeadLetters
from telemetry_gateway.gateway.errors import GatewayError, PartlyStored, StoreRejected, StoreUnavailable, Throttled
from telemetry_gateway.gateway.retry import RetryPolicy
from telemetry_gateway.gateway.batch import Batch, arrow_of
from telemetry_gateway.gateway.spool.spool import Intent, Spool
from telemetry_gateway.gateway.store.base import RegionStore
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.schema import Table, conform

log = logging.getLogger(__name__)


def batch_token(batch_ids: list[str]) -> str:
    """Deterministic insert_deduplication_token for a group of batches."""
    return hashlib.sha256("\n".join(batch_ids).encode()).hexdigest()[:32]


class Stopped(Exception):
    """The writer was told to stop while a group was still unstored."""


@dataclass
class _Queued:
    batch: Batch
    since: float
    done: asyncio.Future | None = None


@dataclass
class _Group:
    items: list[_Queued]
    token: str = ""
    announced: bool = False  # an INTENT for this token is already in the spool
    skip: frozenset[str] = frozenset()  # tables that already hold these rows (PartlyStored)

    def __post_init__(self) -> None:
        self.token = self.token or batch_token([q.batch.batch_id for q in self.items])

    @property
    def rows(self) -> int:
        return sum(q.batch.num_rows for q in self.items)


@dataclass
class WriterSettings:
    max_rows: int
    max_delay_s: float
    max_pending_rows: int
    retry_after_s: float
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log_max_delay_s: float = 10.0  # for ingest_log (store.batch.ingest_log_max_delay)


class TableWriter:
    def __init__(self, store: RegionStore, table: Table, executor: ThreadPoolExecutor, telemetry: SelfMetrics,
                 settings: WriterSettings, spool: Spool | None = None, dead_letters: DeadLetters | None = None) -> None:
        self.store = store
        self.table = table
        self._executor = executor
        self._telemetry = telemetry
        self._settings = settings
        self._spool = spool
        self._dead_letters = dead_letters
        self._queue: list[_Queued] = []
        self._replays: list[_Group] = []
        self._queued_rows = 0
        self._inflight_rows = 0
        self.queued_bytes = 0  # Arrow bytes held in memory until stored (read by the memory limiter)
        self._wake = asyncio.Event()
        self._closing = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._failing: str | None = None  # why the last insert failed, until one succeeds
        self._gathering = False
        self._failing_since = 0.0

    @property
    def pending_rows(self) -> int:
        return self._queued_rows + self._inflight_rows

    @property
    def name(self) -> str:
        return f"{self.store.region}/{self.table.name}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"writer-{self.name}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """Last line of defence: a writer that ends before shutdown is restarted, loudly."""
        if self._closing or task.cancelled():
            return
        error = task.exception()
        self._fail(f"writer task ended: {type(error).__name__}: {error}" if error else "writer task ended")
        log.error("writer %s ended unexpectedly (%s); restarting it", self.name, self._failing)
        self.start()

    def health(self) -> str | None:
        """None while storing; otherwise why this writer is not making progress."""
        if self._failing is None or self.pending_rows == 0:
            return None
        since = time.monotonic() - self._failing_since
        return f"{self.name}: no insert has succeeded for {since:.0f}s, {self.pending_rows} rows waiting: {self._failing}"

    def _fail(self, reason: str) -> None:
        if self._failing is None:
            self._failing_since = time.monotonic()
        self._failing = reason.splitlines()[0][:500] if reason else "unknown error"

    # -- intake ---------------------------------------------------------------
    def submit(self, batch: Batch, done: asyncio.Future | None = None) -> None:
        """Queue a batch (durable in the spool, or with `done` to resolve when stored)."""
        self._queue.append(_Queued(batch, time.monotonic(), done))
        self._queued_rows += batch.num_rows
        self.queued_bytes += batch.nbytes
        self._report_depth()
        # While gathering, only a full batch needs the loop: waking it per batch cost a task each.
        if not self._gathering or self._queued_rows >= self._settings.max_rows:
            self._wake.set()

    def replay(self, intent: Intent, batches: list[Batch]) -> None:
        """Redo a group announced before a crash: same batches, same token."""
        items = [_Queued(b, time.monotonic()) for b in batches]
        self._replays.append(_Group(items, intent.token, announced=True, skip=frozenset(intent.skip)))
        self._queued_rows += sum(b.num_rows for b in batches)
        self.queued_bytes += sum(b.nbytes for b in batches)
        self._wake.set()

    async def write(self, batch: Batch) -> None:
        """Without a spool: wait until the rows are stored."""
        if batch.num_rows == 0:
            return
        if self._closing:
            raise Throttled("the gateway is shutting down", self._settings.retry_after_s)
        if self.pending_rows + batch.num_rows > self._settings.max_pending_rows:
            raise Throttled(
                f"{self.pending_rows} rows are waiting for the {self.store.region} store; retry later",
                self._settings.retry_after_s,
            )
        done = asyncio.get_running_loop().create_future()
        self.submit(batch, done)
        await asyncio.shield(done)

    # -- the loop -------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    return
            except Stopped:
                log.info("%s stopped with rows still in the spool", self.name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the writer: log, report, go on
                self._fail(f"{type(exc).__name__}: {exc}")
                log.exception("writer %s: unexpected error, continuing", self.name)
                if not await self._settings.retry.wait(1, self._stop):
                    return

    async def _step(self) -> bool:
        """Store one group; False once closed and empty."""
        await self._wake.wait()
        self._wake.clear()
        if not self._queue and not self._replays:
            return not self._closing
        if not self._replays:
            await self._gather()
        group = self._replays.pop(0) if self._replays else self._take()
        await self._store_group(group)
        if self._queue or self._replays or self._closing:
            self._wake.set()
        return True

    async def _gather(self) -> None:
        """Wait until a full batch is queued or the oldest rows have waited max_delay."""
        deadline = self._queue[0].since + self._settings.max_delay_s
        self._gathering = True
        try:
            while self._queued_rows < self._settings.max_rows and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    return
        finally:
            self._gathering = False

    def _take(self) -> _Group:
        taken, size = [], 0
        while self._queue and (not taken or size + self._queue[0].batch.num_rows <= self._settings.max_rows):
            item = self._queue.pop(0)
            taken.append(item)
            size += item.batch.num_rows
        return _Group(taken)

    async def _store_group(self, group: _Group) -> None:
        rows = group.rows
        self._queued_rows -= rows
        self._inflight_rows += rows
        try:
            await self._insert_group(group)
        finally:
            self._inflight_rows -= rows
            self._report_depth()
            self.queued_bytes -= _nbytes(group)

    async def _insert_group(self, group: _Group) -> None:
        if self._spool is not None and not group.announced:
            try:
                await self._spool.append_intent(self._intent(group))
            except OSError as exc:
                # Not announced, so not inserted: the group waits its turn again.
                self._fail(f"the spool could not record the insert: {exc}")
                log.error("writer %s: the spool could not record the insert: %s", self.name, exc)
                self._replays.insert(0, group)
                self._queued_rows += group.rows
                self.queued_bytes += _nbytes(group)
                await self._settings.retry.wait(1, self._stop)
                return
        try:
            await self._insert_with_retry(group)
        except GatewayError as exc:
            if self._spool is None:
                _settle(group, exc)
            elif exc.retryable:
                # Attempt cap reached: the group stays announced and goes round again.
                self._replays.insert(0, _Group(group.items, group.token, announced=True, skip=group.skip))
                self._queued_rows += group.rows
                self.queued_bytes += _nbytes(group)
            else:
                await self._refused(group, exc)
            return
        if self._spool is not None:
            await self._spool.append_done(group.token, "stored")
        _settle(group, None)

    def _intent(self, group: _Group) -> Intent:
        return Intent(group.token, self.store.region, self.table.name, [q.batch.batch_id for q in group.items],
                      sorted(group.skip))

    def _rows(self, group: _Group) -> pa.Table:
        try:
            tables = [conform(self.table, q.batch.rows) for q in group.items if q.batch.records is None]
            with_records = [q.batch for q in group.items if q.batch.records is not None]
            if with_records:
                tables.append(arrow_of(self.table, with_records))
            return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        except Exception as exc:  # noqa: BLE001 - whatever the data does, it is this group's fault
            raise StoreRejected(f"batch rows do not fit table {self.table.name}: {type(exc).__name__}: {exc}") from exc

    async def _insert_with_retry(self, group: _Group) -> None:
        try:
            table = self._rows(group)
        except StoreRejected as exc:
            self._telemetry.store_failed(self.store.region, self.table.name, type(exc).__name__)
            self._fail(str(exc))
            raise
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.store.insert_group, self.table, table, group.token, group.skip
                )
            except Exception as exc:
                error = _as_gateway_error(exc)
                self._telemetry.store_failed(self.store.region, self.table.name, type(error).__name__)
                self._fail(str(error))
                if self._spool is None or not self._settings.retry.should_retry(error, attempt):
                    raise error from exc
                log.warning("insert into %s/%s failed (attempt %d), retrying: %s",
                            self.store.region, self.table.name, attempt, str(error).splitlines()[0])
                if not await self._settings.retry.wait(attempt, self._stop):
                    raise Stopped() from exc
                continue
            self._telemetry.stored(self.store.region, self.table.name, table.num_rows, time.monotonic() - started)
            self._failing = None
            return

    async def _refused(self, group: _Group, exc: GatewayError) -> None:
        """A permanent refusal: split the group, dead-letter single batches. Tables that took the
        group's share before the refusal are skipped by its parts and by a redrive."""
        skip = exc.stored if isinstance(exc, PartlyStored) else group.skip
        if len(group.items) == 1:
            batch = group.items[0].batch
            await asyncio.to_thread(self._dead_letters.put, batch, str(exc), skip)
            self._telemetry.dead_lettered(self.store.region, self.table.name, batch.num_rows)
            log.error("batch %s refused by the %s store, moved to the dead-letter area: %s",
                      batch.batch_id, self.store.region, str(exc).splitlines()[0])
            await self._spool.append_done(group.token, "dead_letter")
            return
        await self._spool.append_done(group.token, "split")
        for item in group.items:
            await self._insert_group(_Group([item], skip=skip))

    def _report_depth(self) -> None:
        self._telemetry.queue_depth(self.store.region, self.table.name, self.pending_rows)

    # -- shutdown -------------------------------------------------------------
    async def close(self, drain_timeout_s: float) -> None:
        """Stop taking rows; store what is queued within the timeout.

        With the spool, whatever is left stays there for the next start.
        Without it, waiting clients get a retryable error.
        """
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_s)
        except asyncio.TimeoutError:
            self._stop.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for item in self._queue:
            if item.done is not None and not item.done.done():
                item.done.set_exception(StoreUnavailable("the gateway stopped before storing these rows"))


def _nbytes(group: _Group) -> int:
    return sum(q.batch.nbytes for q in group.items)


def _as_gateway_error(exc: Exception) -> GatewayError:
    """The store's own errors are classified already; anything else comes from
    the rows (an Arrow or conversion error) and retrying cannot fix it."""
    if isinstance(exc, GatewayError):
        return exc
    return StoreRejected(f"{type(exc).__name__}: {exc}")


def _settle(group: _Group, error: Exception | None) -> None:
    for item in group.items:
        if item.done is None or item.done.done():
            continue
        if error is None:
            item.done.set_result(None)
        else:
            item.done.set_exception(error)
