"""The ingest pipeline: decode → adapt → route → store.

Receivers hand it the raw OTLP protobuf bytes of one request and get back
how many items were refused and why; they own only transport concerns.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from google.protobuf.message import DecodeError

from adapters.base import AcceptWindow, AdaptResult, IngestContext
from adapters.otlp import logs as otlp_logs
from adapters.otlp import metrics as otlp_metrics
from adapters.otlp.attributes import AttributeSets
from gateway.config import GatewayConfig
from gateway.errors import BadRequest
from gateway.store.regions import RegionStores
from gateway.store.writer import BatchWriter
from gateway.telemetry import Telemetry
from schema import LOGS, POINTS, TABLES, Table

NS = 1_000_000_000


@dataclass(frozen=True)
class Signal:
    name: str
    message: str
    noun: str
    table: Table
    decode: Callable[[bytes], object]
    adapt: Callable[[object, IngestContext, AttributeSets], AdaptResult]


SIGNALS = {
    "metrics": Signal("metrics", "ExportMetricsServiceRequest", "data points", POINTS,
                      otlp_metrics.decode_request, otlp_metrics.metrics_to_arrow),
    "logs": Signal("logs", "ExportLogsServiceRequest", "log records", LOGS,
                   otlp_logs.decode_request, otlp_logs.logs_to_arrow),
}


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    rejected: int
    message: str


class IngestPipeline:
    def __init__(self, config: GatewayConfig, stores: RegionStores, telemetry: Telemetry) -> None:
        self.config = config
        self.stores = stores
        self.telemetry = telemetry
        self.attribute_sets = AttributeSets()
        limits = config.limits
        self.window = AcceptWindow(int(limits.max_age * NS), int(limits.max_future * NS))
        self.writers: dict[tuple[str, str], BatchWriter] = {}
        self._executors: list[ThreadPoolExecutor] = []
        regions = list(config.store.regions)
        # Routing (tenants, residency) plugs in here; until then one region takes all.
        self.default_region = "default" if "default" in regions else regions[0]

    def start(self) -> None:
        batch, limits = self.config.store.batch, self.config.limits
        for store in self.stores:
            # One thread per region: chDB serializes calls anyway, and a slow
            # region must not hold up another.
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{store.region}")
            self._executors.append(executor)
            for table in TABLES:
                writer = BatchWriter(
                    store, table, executor, self.telemetry, batch.max_rows, batch.max_delay,
                    limits.max_pending_rows, limits.retry_after,
                )
                writer.start()
                self.writers[(store.region, table.name)] = writer

    async def ingest(self, signal_name: str, payload: bytes, source_id: str) -> IngestReport:
        signal = SIGNALS[signal_name]
        try:
            request = signal.decode(payload)
        except DecodeError as exc:
            self.telemetry.rejected(signal.name, "otlp", "malformed", 1)
            raise BadRequest(f"request body is not a valid OTLP {signal.message}: {exc}") from None
        ctx = IngestContext(
            source_kind="otlp", source_id=source_id, batch_id=uuid.uuid4().hex,
            received_ns=time.time_ns(), window=self.window, region=self.default_region,
        )
        result = signal.adapt(request, ctx, self.attribute_sets)
        for reason, n in result.outcome.rejected.items():
            self.telemetry.rejected(signal.name, ctx.source_kind, _reason_class(reason), n)
        await self.writers[(ctx.region, signal.table.name)].write(result.table, ctx.batch_id)
        accepted = result.table.num_rows
        self.telemetry.accepted(signal.name, ctx.source_kind, accepted)
        return IngestReport(accepted, result.outcome.rejected_count, result.outcome.message(signal.noun))

    def pending_rows(self) -> int:
        return sum(w.pending_rows for w in self.writers.values())

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.close() for w in self.writers.values()))
        for executor in self._executors:
            executor.shutdown(wait=True)


def _reason_class(reason: str) -> str:
    """A bounded label for /metrics from a free-text reason."""
    for word in ("UTF-8", "accept window", "future", "is 0", "no value", "bucket", "empty", "trace_id", "span_id"):
        if word in reason:
            return word.replace(" ", "_").lower()
    return "other"
