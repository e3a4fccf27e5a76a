"""The spool on real files: framing, damage, replay rules, segment lifecycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from telemetry_gateway.gateway.spool.records import DATA, DONE, INTENT, Record, encode, scan
from telemetry_gateway.gateway.batch import Batch
from telemetry_gateway.gateway.spool.spool import Intent, Spool, SpoolFull, segment_name
from telemetry_gateway.schema import POINTS


def rows(*values: float) -> pa.Table:
    return pa.table({"value": pa.array(values, pa.float64())})


def batch(batch_id: str, *values: float) -> Batch:
    return Batch.local(POINTS, rows(*values), batch_id)


async def fill(spool: Spool, batches: list[Batch], intents: list[tuple[Intent, str | None]] = ()) -> list[Batch]:
    """Append batches, then intents with their outcomes (None: no DONE)."""
    durable: list[Batch] = []
    spool.start(asyncio.get_running_loop())
    for b in batches:
        await spool.append_batch(b, durable.append)
    for intent, outcome in intents:
        await spool.append_intent(intent)
        if outcome:
            await spool.append_done(intent.token, outcome)
    await spool.close()
    return durable


def reopen(path: Path, **kw):
    spool = Spool(path, **kw)
    return spool, spool.open()


# -- records ---------------------------------------------------------------

def test_records_round_trip():
    records = [Record(DATA, {"batch_id": "ab"}, b"payload"), Record(INTENT, {"token": "t"}), Record(DONE, {"token": "t"})]
    result = scan(b"".join(encode(r) for r in records))
    assert [r for _, r in result.records] == records and result.damage == []


def test_a_torn_last_record_is_reported_and_earlier_ones_kept():
    data = encode(Record(DATA, {"n": 1}, b"x" * 100)) + encode(Record(DATA, {"n": 2}, b"y" * 100))
    torn = data[:-30]
    result = scan(torn)
    assert [r.meta["n"] for _, r in result.records] == [1]
    assert len(result.damage) == 1 and result.damage[0].reason == "record runs past the end of the file"
    assert result.valid_end == len(encode(Record(DATA, {"n": 1}, b"x" * 100)))


def test_a_corrupted_middle_record_costs_only_itself():
    first, second, third = (encode(Record(DATA, {"n": n}, bytes([n]) * 64)) for n in (1, 2, 3))
    damaged = bytearray(first + second + third)
    damaged[len(first) + 30] ^= 0xFF  # a payload byte of the second record
    result = scan(bytes(damaged))
    assert [r.meta["n"] for _, r in result.records] == [1, 3]
    assert [(d.start, d.end, d.reason) for d in result.damage] == [(len(first), len(first) + len(second), "checksum mismatch")]


# -- replay rules ------------------------------------------------------------

def test_unfinished_batches_are_replayed_in_order(tmp_path):
    spool, recovery = reopen(tmp_path)
    durable = asyncio.run(fill(spool, [batch("aa01", 1.0), batch("aa02", 2.0)]))
    assert [b.batch_id for b in durable] == ["aa01", "aa02"]
    _, recovery = reopen(tmp_path)
    assert [(b.batch_id, b.rows.column("value").to_pylist()) for b in recovery.batches] == [("aa01", [1.0]), ("aa02", [2.0])]
    assert recovery.intents == []


def test_record_batches_are_spooled_as_json_and_replay_with_their_provenance(tmp_path):
    from telemetry_gateway.gateway.batch import Caller, Provenance
    from telemetry_gateway.schema import INGEST_LOG

    provenance = Provenance("otlp_logs", "otlp", "otlp-grpc:10.0.0.3", Caller("grpc", "10.0.0.3"), "bb01", 5, "acme", "eu")
    logged = Batch(INGEST_LOG, None, provenance, records=[{"format": "otlp_logs", "accepted": 3, "rejected": {"too_old": 1}}])
    spool, _ = reopen(tmp_path)
    asyncio.run(fill(spool, [batch("aa01", 1.0), logged]))
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("segment-*.spool"))
    assert b'[{"format":"otlp_logs","accepted":3,"rejected":{"too_old":1}}]' in raw
    _, recovery = reopen(tmp_path)
    replayed = {b.batch_id: b for b in recovery.batches}
    assert replayed["bb01"].records == logged.records and replayed["bb01"].provenance == provenance
    assert replayed["bb01"].arrow().column("rejected").to_pylist() == [[("too_old", 1)]]
    assert replayed["aa01"].provenance.caller.transport == "local"


def test_an_intent_without_done_is_redone_with_its_token_and_members(tmp_path):
    spool, _ = reopen(tmp_path)
    intent = Intent("cafe0001", "default", "metric_points", ["aa01", "aa02"])
    asyncio.run(fill(spool, [batch("aa01", 1.0), batch("aa02", 2.0), batch("aa03", 3.0)], [(intent, None)]))
    _, recovery = reopen(tmp_path)
    [(redo, members)] = recovery.intents
    assert redo.token == "cafe0001" and [b.batch_id for b in members] == ["aa01", "aa02"]
    assert [b.batch_id for b in recovery.batches] == ["aa03"]


def test_an_intent_keeps_the_tables_its_group_must_skip(tmp_path):
    spool, _ = reopen(tmp_path)
    intent = Intent("cafe0002", "default", "metric_points", ["aa01"], ["samples", "series"])
    asyncio.run(fill(spool, [batch("aa01", 1.0)], [(intent, None)]))
    _, recovery = reopen(tmp_path)
    [(redo, _)] = recovery.intents
    assert redo.skip == ["samples", "series"]


def test_stored_and_dead_lettered_groups_are_finished_but_split_ones_are_not(tmp_path):
    spool, _ = reopen(tmp_path)
    intents = [
        (Intent("t0000001", "default", "metric_points", ["aa01"]), "stored"),
        (Intent("t0000002", "default", "metric_points", ["aa02"]), "dead_letter"),
        (Intent("t0000003", "default", "metric_points", ["aa03", "aa04"]), "split"),
        (Intent("t0000004", "default", "metric_points", ["aa03"]), "stored"),
    ]
    asyncio.run(fill(spool, [batch(f"aa0{i}", float(i)) for i in range(1, 5)], intents))
    spool, recovery = reopen(tmp_path)
    assert recovery.intents == []
    assert [b.batch_id for b in recovery.batches] == ["aa04"]
    assert spool.pending_bytes > 0


def held(batch_id: str, *values: float) -> Batch:
    b = batch(batch_id, *values)
    b.hold = "red"
    return b


def test_held_batches_replay_held_until_a_durable_batch_consumes_them(tmp_path):
    spool, _ = reopen(tmp_path)
    asyncio.run(fill(spool, [held("aa01", 1.0), held("aa02", 2.0), batch("aa03", 3.0)]))
    spool, recovery = reopen(tmp_path)
    assert [(b.batch_id, b.hold) for b in recovery.batches] == [("aa01", "red"), ("aa02", "red"), ("aa03", "")]
    # The written window and the end of the held batches it merges are one record.
    window = batch("aa04", 3.0)
    window.consumes = ("aa01", "aa02")
    pending = spool.pending_bytes
    asyncio.run(fill(spool, [window]))
    assert spool.pending_bytes < pending + window.size  # aa01 and aa02 no longer count
    spool, recovery = reopen(tmp_path)
    assert [(b.batch_id, b.consumes) for b in recovery.batches] == [("aa03", ()), ("aa04", ("aa01", "aa02"))]


def test_a_finished_spool_deletes_its_sealed_segments(tmp_path):
    spool, _ = reopen(tmp_path)
    asyncio.run(fill(spool, [batch("aa01", 1.0)], [(Intent("t0000001", "default", "metric_points", ["aa01"]), "stored")]))
    assert (tmp_path / segment_name(1)).exists()
    spool, recovery = reopen(tmp_path)  # segment 1 is sealed and finished: deleted at open
    assert recovery.batches == [] and not (tmp_path / segment_name(1)).exists()
    assert spool.pending_bytes == 0


def test_segments_rotate_and_are_deleted_once_done(tmp_path):
    async def scenario() -> list[str]:
        spool = Spool(tmp_path, segment_bytes=600)
        spool.open()
        spool.start(asyncio.get_running_loop())
        batches = [batch(f"bb{i:02d}", float(i)) for i in range(6)]
        for b in batches:
            await spool.append_batch(b, lambda _: None)
        before = sorted(p.name for p in tmp_path.iterdir())
        for i, b in enumerate(batches):
            token = f"c{i:07d}"
            await spool.append_intent(Intent(token, "default", "metric_points", [b.batch_id]))
            await spool.append_done(token, "stored")
        await spool.close()
        return before

    before = asyncio.run(scenario())
    assert len(before) >= 3
    after = sorted(p.name for p in tmp_path.iterdir())
    assert len(after) == 1 and after[0] >= before[-1]  # only the active segment is left
    _, recovery = reopen(tmp_path)
    assert recovery.batches == [] and recovery.intents == []


def test_a_torn_tail_is_cut_on_open_and_intact_records_replayed(tmp_path):
    spool, _ = reopen(tmp_path)
    asyncio.run(fill(spool, [batch("aa01", 1.0), batch("aa02", 2.0)]))
    path = tmp_path / segment_name(1)
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # a crash in the middle of the second write
    _, recovery = reopen(tmp_path)
    assert [b.batch_id for b in recovery.batches] == ["aa01"]
    assert recovery.cut_bytes > 0 and recovery.damage[0][1].reason == "record runs past the end of the file"
    assert scan(path.read_bytes()).damage == []  # the file now ends on a record


def test_a_full_spool_refuses_more(tmp_path):
    async def scenario():
        spool = Spool(tmp_path, max_bytes=1)
        spool.open()
        spool.start(asyncio.get_running_loop())
        await spool.append_batch(batch("aa01", 1.0), lambda _: None)
        with pytest.raises(SpoolFull, match="not yet stored"):
            await spool.append_batch(batch("aa02", 2.0), lambda _: None)
        await spool.close()

    asyncio.run(scenario())


def test_small_batches_are_spooled_plain_and_large_ones_compressed_and_both_read_back():
    from telemetry_gateway.gateway.spool.spool import COMPRESS_FROM_ROWS, from_ipc, to_ipc

    def table(n: int) -> pa.Table:
        return pa.table({"text": ["the same words again"] * n, "n": list(range(n))})

    for n in (1, COMPRESS_FROM_ROWS - 1, COMPRESS_FROM_ROWS, 5 * COMPRESS_FROM_ROWS):
        assert from_ipc(to_ipc(table(n))).equals(table(n))
    plain = pa.BufferOutputStream()
    with pa.ipc.new_stream(plain, table(COMPRESS_FROM_ROWS).schema) as writer:
        writer.write_table(table(COMPRESS_FROM_ROWS))
    assert len(to_ipc(table(COMPRESS_FROM_ROWS))) < plain.getvalue().size / 2
    assert len(to_ipc(table(COMPRESS_FROM_ROWS - 1))) > len(to_ipc(table(COMPRESS_FROM_ROWS)))
