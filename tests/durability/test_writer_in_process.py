"""The writer in process, on the real embedded store: split, dead letter, replay, idempotent redo.

The refusing store is the test hook's `FaultyStore` around a real `EmbeddedStore`:
ClickHouse itself accepts these rows, so the refusal has to be injected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.gateway.batch import Batch
from telemetry_gateway.gateway.deadletter import DeadLetters
from telemetry_gateway.gateway.retry import RetryPolicy
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.spool.spool import Intent, Spool
from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.gateway.store.writer import TableWriter, WriterSettings, batch_token
from telemetry_gateway.gateway.testing.faults import FaultyStore
from telemetry_gateway.schema import POINTS
from tests.adapters.otlp.helpers import context, finalized


def batch_of(service: str, n: int = 3) -> Batch:
    rows = PointRows(AttributeSets())
    for i in range(n):
        rows.add(time_ns=time.time_ns(), name="w", kind="gauge", value=float(i), attributes={"i": str(i)},
                 resource={"service.name": service})
    return Batch.local(POINTS, finalized(rows.finish(), context(time.time_ns())).table)


def settings() -> WriterSettings:
    return WriterSettings(10_000, 0.01, 1_000_000, 1.0, RetryPolicy(0.01, 0.05, 2.0, 0.0, 0))


def count(store, service: str) -> int:
    return int(store.execute(f"SELECT count() FROM {store.database}.metric_points WHERE service_name = '{service}'"))


class Rig:
    def __init__(self, path, database: str) -> None:
        self.path = path
        self.store = FaultyStore(EmbeddedStore("default", database, path), path / "faults")
        (path / "faults").mkdir(exist_ok=True)
        self.dead = DeadLetters(path / "dead")
        self.executor = ThreadPoolExecutor(1)

    async def writer(self, spool: Spool) -> TableWriter:
        writer = TableWriter(self.store, POINTS, self.executor, SelfMetrics(), settings(), spool, self.dead)
        writer.start()
        return writer


async def settle(writer: TableWriter) -> None:
    deadline = time.monotonic() + 30
    while writer.pending_rows and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_a_refused_group_is_split_and_only_the_bad_batch_dead_lettered(embedded_path):
    rig = Rig(embedded_path, f"w_{uuid.uuid4().hex[:8]}")
    rig.store.open()
    (embedded_path / "faults" / "reject-service").write_text("poison")
    spool = Spool(embedded_path / f"spool-{uuid.uuid4().hex[:6]}")
    spool.open()

    async def run():
        spool.start(asyncio.get_running_loop())
        writer = await rig.writer(spool)
        good, bad, also_good = batch_of("good"), batch_of("poison"), batch_of("also_good")
        for b in (good, bad, also_good):
            await spool.append_batch(b, writer.submit)
        await settle(writer)
        await writer.close(5)
        await spool.close()
        return bad

    try:
        bad = asyncio.run(run())
        assert (count(rig.store, "good"), count(rig.store, "also_good"), count(rig.store, "poison")) == (3, 3, 0)
        assert [d.batch_id for d in rig.dead.list()] == [bad.batch_id]
        assert rig.dead.load(bad.batch_id).rows.num_rows == 3
        assert spool.pending_bytes == 0  # every batch finished: stored or dead-lettered
    finally:
        (embedded_path / "faults" / "reject-service").unlink()
        rig.store.close()


def test_a_group_announced_before_a_crash_is_redone_once_even_if_it_was_stored(embedded_path):
    rig = Rig(embedded_path, f"w_{uuid.uuid4().hex[:8]}")
    rig.store.open()
    spool_path = embedded_path / f"spool-{uuid.uuid4().hex[:6]}"
    first, second = batch_of("replayed"), batch_of("replayed")
    token = batch_token([first.batch_id, second.batch_id])

    async def before_the_crash():
        spool = Spool(spool_path)
        spool.open()
        spool.start(asyncio.get_running_loop())
        for b in (first, second):
            await spool.append_batch(b, lambda _: None)
        await spool.append_intent(Intent(token, "default", "metric_points", [first.batch_id, second.batch_id]))
        await spool.close()  # no DONE: as if killed right after the insert below

    async def after_the_restart():
        spool = Spool(spool_path)
        recovery = spool.open()
        spool.start(asyncio.get_running_loop())
        writer = await rig.writer(spool)
        for intent, batches in recovery.intents:
            writer.replay(intent, batches)
        await settle(writer)
        await writer.close(5)
        await spool.close()
        return recovery

    try:
        asyncio.run(before_the_crash())
        import pyarrow as pa

        rig.store.insert_group(POINTS, pa.concat_tables([first.rows, second.rows]), token)  # the insert that made it
        recovery = asyncio.run(after_the_restart())
        assert [i.token for i, _ in recovery.intents] == [token]
        assert [b.provenance.batch_id for b in recovery.intents[0][1]] == [first.batch_id, second.batch_id]
        assert count(rig.store, "replayed") == 6  # the redo carried the same token: stored once
        reopened = Spool(spool_path)
        assert reopened.open().intents == [] and reopened.open().batches == []
    finally:
        rig.store.close()
