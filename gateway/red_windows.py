"""RED windows across requests: one row per (series, window), written when the window closes.

The red_series stage turns one request's spans into RED points per window of
span end time (`adapters.apm.red`). A sender that exports one span per
request (the JS SimpleSpanProcessor, serverless code) would then leave one
row per request and window. Instead, each request's points are handed here as
held batches, one per window: durable in the spool before the request is
answered, but not written.

A window closes `apm.lateness` after it ends, or after its last held batch
arrived if that is later (an edge agent replaying old spans). Its points are
merged into one row per series (sums added, histograms added bucket by
bucket, the slowest span's trace first among the exemplars) and written as one
batch whose spool record also finishes the held ones. A crash therefore
leaves either the held batches (replayed into their window after the restart)
or the written window, never both and never neither.

Held batches for a window this process has already written merge on their
own and are written as further rows flagged `late`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.gateway.batch import Batch, Caller, Provenance, new_batch_id
from telemetry_gateway.gateway.errors import GatewayError
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.sink import Sink
from telemetry_gateway.schema import POINTS, arrow_schema

HOLD = "red"
_WRITTEN_MEMORY_NS = 86400 * 10**9  # how long a written window is remembered, to flag late rows
log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class WindowKey:
    end_ns: int
    tenant: str
    region: str
    late: bool


@dataclass
class _Open:
    batches: list[Batch] = field(default_factory=list)
    last_arrival_ns: int = 0


class RedWindows:
    def __init__(self, sink: Sink, telemetry: SelfMetrics, lateness_s: float) -> None:
        self.sink = sink
        self.telemetry = telemetry
        self.lateness_ns = int(lateness_s * 1e9)
        self.tick_s = min(1.0, lateness_s / 2)
        self.open: dict[WindowKey, _Open] = {}
        self.written: dict[tuple[str, str, int], int] = {}  # (tenant, region, window end) -> when
        self._closing = asyncio.Lock()
        self._errors = RateLimitedLog(log)

    def add(self, batch: Batch) -> None:
        """A held batch, durable in the spool: all its rows end one window."""
        p = batch.provenance
        end = int(pc.max(pc.cast(batch.rows.column("time"), pa.int64())).as_py())
        key = WindowKey(end, p.tenant, p.region, (p.tenant, p.region, end) in self.written)
        entry = self.open.setdefault(key, _Open())
        entry.batches.append(batch)
        entry.last_arrival_ns = time.time_ns()

    def health(self, now_ns: int | None = None, grace_s: float = 60.0) -> list[str]:
        """Windows that should have been written more than `grace_s` ago (keeping them keeps failing)."""
        late = self.due((now_ns or time.time_ns()) - int(grace_s * 1e9))
        if not late:
            return []
        held = sum(len(self.open[k].batches) for k in late)
        return [f"RED windows: {len(late)} overdue by more than {grace_s:g}s ({held} held batches not written)"]

    def due(self, now_ns: int) -> list[WindowKey]:
        return sorted(k for k, e in self.open.items() if max(k.end_ns, e.last_arrival_ns) + self.lateness_ns <= now_ns)

    async def close_due(self, now_ns: int | None = None) -> int:
        """Write every window that is due (all of them with a `now_ns` far ahead); returns how many."""
        async with self._closing:
            now_ns = now_ns or time.time_ns()
            closed = 0
            for key in self.due(now_ns):
                if not await self._close(key):
                    break
                closed += 1
            self._forget_written(time.time_ns())
            return closed

    async def _close(self, key: WindowKey) -> bool:
        entry = self.open.pop(key)
        batches = self._merged(key, entry.batches)
        try:
            await self.sink.keep(batches)
        except GatewayError as exc:  # the spool is full or failing: the held batches stay, retried next tick
            back = self.open.setdefault(key, _Open(last_arrival_ns=entry.last_arrival_ns))
            back.batches[:0] = entry.batches
            self._errors.warning("keep", "RED window ending %d for tenant %s not written yet: %s", key.end_ns,
                                 key.tenant, exc)
            return False
        self.written[(key.tenant, key.region, key.end_ns)] = time.time_ns()
        for batch in batches:
            self.telemetry.derived(batch.provenance.format, key.tenant, "red_series", POINTS.name, batch.num_rows)
        return True

    def _merged(self, key: WindowKey, held: list[Batch]) -> list[Batch]:
        try:
            return [window_batch(key, held)]
        except Exception:  # a bug in merging must not lose spans: write the held points as they are
            self._errors.log(logging.ERROR, "merge", "merging a RED window failed; writing its %d batches unmerged",
                             len(held), exc_info=True)
            return [Batch(POINTS, b.rows, b.provenance.derived(), consumes=(b.batch_id,)) for b in held]

    def _forget_written(self, now_ns: int) -> None:
        for k in [k for k, at in self.written.items() if at < now_ns - _WRITTEN_MEMORY_NS]:
            del self.written[k]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.close_due()
            except Exception:  # never let the closer die: held spans would wait until a restart
                log.exception("closing RED windows failed; retrying")


def window_batch(key: WindowKey, held: list[Batch]) -> Batch:
    """The held batches of one window merged into one batch that consumes them."""
    first = held[0].provenance
    provenance = Provenance(first.format, "apm", first.source_id, Caller("internal"), new_batch_id(), time.time_ns(),
                            key.tenant, key.region)
    rows = merge_points([b.rows for b in held], key.late, provenance.batch_id)
    return Batch(POINTS, rows, provenance, consumes=tuple(b.batch_id for b in held))


def merge_points(tables: list[pa.Table], late: bool, batch_id: str) -> pa.Table:
    """One row per series: sums added, histograms added bucket by bucket, flags united."""
    rows = _plain(pa.concat_tables(tables))
    merged: dict[int, dict] = {}
    exemplars: dict[tuple, list[tuple[float, list[str]]]] = {}
    for row in rows:
        cell = (row["service_name"], tuple(sorted(row["attributes"])), row["time"])
        exemplars.setdefault(cell, []).append((row["max"] if row["max"] is not None else -1.0, row["exemplar_trace_ids"]))
        into = merged.get(row["series_id"])
        if into is None:
            merged[row["series_id"]] = dict(row)
        else:
            _add(into, row)
    for row in merged.values():
        cell = (row["service_name"], tuple(sorted(row["attributes"])), row["time"])
        row["exemplar_trace_ids"] = _slowest_first(exemplars[cell])
        row["quality_flags"] = sorted(set(row["quality_flags"]) | ({"late"} if late else set()))
        row["batch_id"] = batch_id
    return pa.Table.from_pylist(list(merged.values()), schema=arrow_schema(POINTS))


def _plain(table: pa.Table) -> list[dict]:
    """Rows as dicts, times as integer nanoseconds (datetime would cut them to microseconds)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), pa.int64()))
    return table.to_pylist()


def _add(into: dict, row: dict) -> None:
    if into["kind"] == "sum":
        into["value"] += row["value"]
    else:
        into["count"] += row["count"]
        into["sum"] = (into["sum"] or 0.0) + (row["sum"] or 0.0)
        into["min"] = _either(min, into["min"], row["min"])
        into["max"] = _either(max, into["max"], row["max"])
        into["bucket_counts"] = [a + b for a, b in zip(into["bucket_counts"], row["bucket_counts"])]
    into["quality_flags"] = list(set(into["quality_flags"]) | set(row["quality_flags"]))
    into["received_time"] = max(into["received_time"], row["received_time"])


def _either(pick, a, b):
    return b if a is None else a if b is None else pick(a, b)


def _slowest_first(seen: list[tuple[float, list[str]]]) -> list[str]:
    """Up to three trace ids: each partial lists its slowest span first, so order partials by their max."""
    ordered = [t for _, ids in sorted(seen, key=lambda s: -s[0]) for t in ids]
    return list(dict.fromkeys(ordered))[:3]
