"""The ingest pipeline: decode → adapt → route → spool → store.

Receivers hand it the raw OTLP protobuf bytes of one request and get back
how many items were refused and why; they own only transport concerns.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

import pyarrow as pa
from google.protobuf.message import DecodeError

from telemetry_gateway.adapters.base import AcceptWindow, AdaptResult, IngestContext, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.prometheus.families import add_samples
from telemetry_gateway.adapters.otlp import logs as otlp_logs
from telemetry_gateway.adapters.otlp import metrics as otlp_metrics
from telemetry_gateway.adapters.apm import otlp_traces, zipkin
from telemetry_gateway.adapters.apm.red import SeriesLimiter, red_rows
from telemetry_gateway.adapters.jsonlines import jsonlines_to_arrow
from telemetry_gateway.adapters.log_metrics import LogMetricRule, derive
from telemetry_gateway.adapters.normalize import CumulativeToDelta, Names, ServiceCatalog, convert_units
from telemetry_gateway.adapters.otlp.attributes import AttributeLimits, AttributeSets
from telemetry_gateway.adapters.syslog import syslog_to_arrow
from telemetry_gateway.adapters.prometheus import remote_write
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.deadletter import DeadLetters
from telemetry_gateway.gateway.errors import BadRequest, GatewayError, StoreUnavailable, Throttled
from telemetry_gateway.gateway.memory import MemoryLimiter
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.retry import RetryPolicy
from telemetry_gateway.gateway.spool.spool import Batch, Recovery, Spool
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.store.writer import TableWriter, WriterSettings
from telemetry_gateway.gateway.telemetry import Telemetry
from telemetry_gateway.schema import LOGS, POINTS, SPANS, TABLES, Table, conform

NS = 1_000_000_000
log = logging.getLogger(__name__)


@dataclass
class AdapterState:
    """What adapters remember between requests."""

    apm_series: SeriesLimiter
    apm_window_s: int
    attribute_sets: AttributeSets = field(default_factory=AttributeSets)
    prometheus: PrometheusMetadata = field(default_factory=PrometheusMetadata)

    def __post_init__(self) -> None:
        self.prometheus.limits = self.attribute_sets.limits


def _red(facts_and_refused, ctx: IngestContext, state: AdapterState) -> AdaptResult:
    facts, refused = facts_and_refused
    result = red_rows(facts, ctx, state.apm_series, state.apm_window_s)
    result.outcome.reject("span ids, attributes, name or fields are not valid", refused)
    return result


@dataclass(frozen=True)
class Signal:
    name: str
    source_kind: str
    message: str
    noun: str
    table: Table
    decode: Callable[[bytes], object]
    adapt: Callable[[object, IngestContext, AdapterState], AdaptResult]


SIGNALS = {
    "metrics": Signal("metrics", "otlp", "OTLP ExportMetricsServiceRequest", "data points", POINTS,
                      otlp_metrics.decode_request,
                      lambda r, ctx, st: otlp_metrics.metrics_to_arrow(r, ctx, st.attribute_sets)),
    "logs": Signal("logs", "otlp", "OTLP ExportLogsServiceRequest", "log records", LOGS,
                   otlp_logs.decode_request, lambda r, ctx, st: otlp_logs.logs_to_arrow(r, ctx, st.attribute_sets)),
    "remote_write": Signal("metrics", "remote_write", "Prometheus WriteRequest", "samples", POINTS,
                           remote_write.decode_request,
                           lambda r, ctx, st: remote_write.remote_write_to_arrow(r, ctx, st.prometheus, st.attribute_sets.names)),
    "traces": Signal("traces", "apm", "OTLP ExportTraceServiceRequest", "spans", POINTS, otlp_traces.decode_request,
                     lambda r, ctx, st: _red(otlp_traces.span_facts(r, st.attribute_sets), ctx, st)),
    "zipkin": Signal("traces", "apm", "Zipkin v2 span list", "spans", POINTS, zipkin.decode,
                     lambda r, ctx, st: _red(zipkin.span_facts(r), ctx, st)),
    "syslog": Signal("logs", "log", "syslog message", "syslog messages", LOGS, lambda messages: messages,
                     lambda r, ctx, st: syslog_to_arrow(r, ctx)),
    "jsonlines": Signal("logs", "log", "JSON lines body", "lines", LOGS, lambda body: body,
                        lambda r, ctx, st: jsonlines_to_arrow(r, ctx, st.attribute_sets.limits)),
}


# Signals whose spans are kept in the `spans` table when apm.store_spans is on.
SPAN_SOURCES = {"traces": otlp_traces.spans_to_arrow, "zipkin": zipkin.spans_to_arrow}


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    rejected: int
    message: str


@dataclass
class Prepared:
    """What one request became, before anything of it is kept."""

    signal: str
    source_kind: str
    report: IngestReport
    batches: list[tuple[IngestContext, Table, pa.Table]]
    derived: list[tuple[str, str, int]] = field(default_factory=list)  # (signal, source kind, rows) for /metrics

    def add_derived(self, signal: str | None, batch: tuple[IngestContext, Table, pa.Table]) -> None:
        self.batches.append(batch)
        if signal is not None:
            self.derived.append((signal, batch[0].source_kind, batch[2].num_rows))


class IngestPipeline:
    def __init__(self, config: GatewayConfig, stores: RegionStores, telemetry: Telemetry) -> None:
        self.config = config
        self.stores = stores
        self.telemetry = telemetry
        n = config.normalize
        names = Names(n.metric_names, n.attribute_names)
        attribute_limits = AttributeLimits(config.limits.max_attributes, config.limits.max_attribute_length)
        self.adapter_state = AdapterState(SeriesLimiter(config.apm.max_series), int(config.apm.window),
                                          AttributeSets(names=names, limits=attribute_limits))
        self.to_delta = CumulativeToDelta(n.cumulative_to_delta)
        self.catalog = ServiceCatalog(n.service_catalog)
        self.log_rules = [LogMetricRule.build(**rule.model_dump()) for rule in config.log_metrics]
        limits = config.limits
        self.window = AcceptWindow(int(limits.max_age * NS), int(limits.max_future * NS))
        self.writers: dict[tuple[str, str], TableWriter] = {}
        self.memory = MemoryLimiter(limits.max_memory_mib << 20, limits.retry_after,
                                    lambda: sum(w.queued_bytes for w in self.writers.values()))
        self._adapter = ThreadPoolExecutor(1, thread_name_prefix="adapter")
        self._errors = RateLimitedLog(log)
        self._executors: list[ThreadPoolExecutor] = [self._adapter]
        self.spool = _spool(config)
        self.dead_letters = DeadLetters(config.store.path / "deadletter")
        regions = list(config.store.regions)
        # Routing (tenants, residency) plugs in here; until then one region takes all.
        self.default_region = "default" if "default" in regions else regions[0]

    def start(self) -> None:
        """Start writers, then hand them what the spool still holds."""
        recovery = self.spool.open() if self.spool else None
        if self.spool:
            self.spool.start(asyncio.get_running_loop())
        settings = _writer_settings(self.config)
        for store in self.stores:
            # One thread per region: chDB serializes calls anyway, and a slow
            # region must not hold up another.
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{store.region}")
            self._executors.append(executor)
            for table in TABLES:
                writer = TableWriter(store, table, executor, self.telemetry, settings, self.spool, self.dead_letters)
                writer.start()
                self.writers[(store.region, table.name)] = writer
        if recovery is not None:
            self._resume(recovery)

    def _resume(self, recovery: Recovery) -> None:
        for name, damage in recovery.damage:
            log.warning("spool %s: cut bytes %d-%d (%s)", name, damage.start, damage.end, damage.reason)
        self.telemetry.spool_cut.inc(recovery.cut_bytes)
        for intent, batches in recovery.intents:
            self._writer_for(intent.region, intent.table).replay(intent, batches)
        for batch in recovery.batches:
            self._writer_for(batch.region, batch.table).submit(batch)
        replayed = len(recovery.batches) + sum(len(b) for _, b in recovery.intents)
        self.telemetry.replayed.inc(replayed)
        if replayed or recovery.damage:
            log.info("spool: replaying %d batches (%d groups announced before the stop), cut %d damaged bytes",
                     replayed, len(recovery.intents), recovery.cut_bytes)

    def health(self) -> list[str]:
        """Why data is not being stored, per writer; empty when all make progress."""
        return [problem for w in self.writers.values() if (problem := w.health())]

    def _writer_for(self, region: str, table: str) -> TableWriter:
        writer = self.writers.get((region, table))
        if writer is None:
            raise RuntimeError(f"the spool holds data for region {region!r}, which is no longer configured")
        return writer

    async def ingest(self, signal_name: str, payload: bytes, source_id: str) -> IngestReport:
        """Decode, adapt and keep one request; answer only once every item's fate is decided.

        All CPU work runs on the adapter thread, so a large request never
        freezes the listeners. Nothing is kept until every batch the request
        makes is built, so an error never follows partly kept data.
        """
        with self.memory.hold(len(payload)):
            prepared = await self._on_adapter_thread(self._prepare, signal_name, payload, source_id)
            await self._keep_all(prepared.batches)
        self.telemetry.accepted(prepared.signal, prepared.source_kind, prepared.report.accepted)
        for signal, source_kind, n in prepared.derived:
            self.telemetry.accepted(signal, source_kind, n)
        return prepared.report

    async def _on_adapter_thread(self, fn, *args):
        # One thread: adapter state (attribute sets, metadata, RED windows) is not shared across threads.
        return await asyncio.get_running_loop().run_in_executor(self._adapter, fn, *args)

    def _prepare(self, signal_name: str, payload: bytes, source_id: str) -> Prepared:
        signal = SIGNALS[signal_name]
        try:
            return self._adapt(signal_name, signal, payload, source_id)
        except GatewayError:
            raise
        except Exception as exc:  # an adapter bug: nothing of the request is kept, so a 4xx is safe and final
            self.telemetry.rejected(signal.name, signal.source_kind, "adapter_error", 1)
            self._errors.log(logging.ERROR, f"adapt-{signal_name}", "%s could not be adapted: %s: %s",
                             signal.message, type(exc).__name__, exc, exc_info=True)
            raise BadRequest(f"the {signal.message} could not be adapted ({type(exc).__name__}: {exc}); nothing of it "
                             "was kept") from None

    def _adapt(self, signal_name: str, signal: Signal, payload: bytes, source_id: str) -> Prepared:
        try:
            request = signal.decode(payload)
        except (DecodeError, ValueError, OverflowError) as exc:
            self.telemetry.rejected(signal.name, signal.source_kind, "malformed", 1)
            raise BadRequest(f"request body is not a valid {signal.message}: {exc}") from None
        ctx = self._context(signal.source_kind, source_id)
        result = signal.adapt(request, ctx, self.adapter_state)
        self._count_rejected(signal.name, ctx.source_kind, result.outcome)
        table = self._normalize(signal.table, result.table)
        report = IngestReport(table.num_rows, result.outcome.rejected_count, result.outcome.message(signal.noun))
        prepared = Prepared(signal.name, ctx.source_kind, report, [(ctx, signal.table, table)])
        if signal.table is LOGS and self.log_rules:
            prepared.add_derived("metrics", self._derive_log_metrics(ctx, table))
        if signal_name in SPAN_SOURCES and self.config.apm.store_spans:
            prepared.add_derived(None, self._span_rows(ctx, SPAN_SOURCES[signal_name], request))
        return prepared

    def _context(self, source_kind: str, source_id: str) -> IngestContext:
        return IngestContext(
            source_kind=source_kind, source_id=source_id, batch_id=uuid.uuid4().hex,
            received_ns=time.time_ns(), window=self.window, region=self.default_region,
        )

    def _count_rejected(self, signal: str, source_kind: str, outcome: Outcome) -> None:
        for reason, n in outcome.rejected.items():
            self.telemetry.rejected(signal, source_kind, _reason_class(reason), n)

    def _normalize(self, kind: Table, rows: pa.Table) -> pa.Table:
        """Shared normalization after every adapter (adapters.normalize), then the table's one shape."""
        if kind is POINTS:
            if self.config.normalize.units:
                rows = convert_units(rows)
            rows = self.to_delta.apply(rows)
        return conform(kind, self.catalog.enrich(rows))

    def _span_rows(self, red_ctx: IngestContext, to_rows, request) -> tuple[IngestContext, Table, pa.Table]:
        ctx = replace(red_ctx, batch_id=uuid.uuid4().hex)
        spans = to_rows(request, ctx, self.adapter_state.attribute_sets)
        return ctx, SPANS, self._normalize(SPANS, spans.table)

    def _derive_log_metrics(self, log_ctx: IngestContext, logs: pa.Table) -> tuple[IngestContext, Table, pa.Table]:
        ctx = replace(log_ctx, source_kind="log", batch_id=uuid.uuid4().hex)
        derived = derive(self.log_rules, logs, ctx, int(self.config.apm.window))
        return ctx, POINTS, self._normalize(POINTS, derived.table)

    async def ingest_samples(self, samples: list, lookup, source_kind: str, source_id: str, extra=None) -> IngestReport:
        """Prometheus-model samples from a poller: to points, then kept like any request.
        `extra(rows)` may add derived points (probe series) to the same batch."""
        with self.memory.hold(64 * len(samples)):
            prepared = await self._on_adapter_thread(self._prepare_samples, samples, lookup, source_kind, source_id, extra)
            await self._keep_all(prepared.batches)
        self.telemetry.accepted("metrics", source_kind, prepared.report.accepted)
        return prepared.report

    def _prepare_samples(self, samples: list, lookup, source_kind: str, source_id: str, extra) -> Prepared:
        ctx = self._context(source_kind, source_id)
        outcome = Outcome()
        rows = PointRows()
        add_samples(rows, samples, lambda name: lookup(name) or self.adapter_state.prometheus.lookup(name), outcome,
                    self.adapter_state.attribute_sets.names)
        if extra is not None:
            extra(rows)
        result = rows.finish(ctx, outcome)
        self._count_rejected("metrics", source_kind, outcome)
        table = self._normalize(POINTS, result.table)
        report = IngestReport(table.num_rows, outcome.rejected_count, outcome.message("samples"))
        return Prepared("metrics", source_kind, report, [(ctx, POINTS, table)])

    async def _keep_all(self, batches: list[tuple[IngestContext, Table, pa.Table]]) -> None:
        """Return once every batch is safe: in the spool, or without one, in the store.

        The spool's room is checked once for all of them, so a request is not
        refused after some of its batches were kept.
        """
        batches = [b for b in batches if b[2].num_rows]
        if self.spool is not None and batches:
            if self.spool.pending_bytes >= self.spool.max_bytes:
                raise Throttled(f"the spool holds {self.spool.pending_bytes >> 20} MiB not yet stored "
                                f"(limit {self.spool.max_bytes >> 20} MiB)", self.config.limits.retry_after)
            short = self.spool.disk_short()
            if short:
                raise Throttled(short, self.config.limits.retry_after)
        await asyncio.gather(*(self._keep(ctx, table, rows) for ctx, table, rows in batches))

    async def _keep(self, ctx: IngestContext, table: Table, rows: pa.Table) -> None:
        writer = self.writers[(ctx.region, table.name)]
        if self.spool is None:
            await writer.write(rows, ctx.batch_id)
            return
        batch = Batch(ctx.batch_id, ctx.region, table.name, rows)
        try:
            await self.spool.append_batch(batch, writer.submit, check_room=False)
        except OSError as exc:
            log.error("spool write failed: %s", exc)
            raise StoreUnavailable(f"the spool could not be written: {exc}") from None
        self.telemetry.spool_bytes.set(self.spool.pending_bytes)

    async def redrive(self, dead_letter_id: str) -> str:
        """Send a dead-lettered batch to the store again, under a new batch id
        (the old id is finished in the spool). Returns the new id."""
        old = await asyncio.to_thread(self.dead_letters.load, dead_letter_id)
        batch_id = uuid.uuid4().hex
        ctx = IngestContext("otlp", "redrive", batch_id, time.time_ns(), region=old.region)
        table = _table_named(old.table)
        await self._keep_all([(ctx, table, conform(table, old.rows))])
        await asyncio.to_thread(self.dead_letters.remove, dead_letter_id)
        return batch_id

    async def drain(self) -> None:
        """Store what is queued within the drain timeout (runs while receivers drain)."""
        timeout = self.config.shutdown.drain_timeout
        await asyncio.gather(*(w.close(timeout) for w in self.writers.values()))

    async def close(self) -> None:
        """After receivers and writers have stopped: close the spool and threads."""
        if self.spool is not None:
            await self.spool.close()
        for executor in self._executors:
            executor.shutdown(wait=True)


def _table_named(name: str) -> Table:
    for table in TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no table named {name!r}")


def _spool(config: GatewayConfig) -> Spool | None:
    c = config.spool
    if not c.enabled:
        return None
    return Spool(c.path or config.store.path / "spool", c.fsync, c.fsync_interval,
                 int(c.segment_size_mib * (1 << 20)), int(c.max_size_mib * (1 << 20)))


def _writer_settings(config: GatewayConfig) -> WriterSettings:
    r = config.store.retry
    return WriterSettings(
        config.store.batch.max_rows, config.store.batch.max_delay, config.limits.max_pending_rows,
        config.limits.retry_after, RetryPolicy(r.initial, r.max, r.multiplier, r.jitter, r.max_attempts),
    )


def _reason_class(reason: str) -> str:
    """A bounded label for /metrics from a free-text reason."""
    for word in ("UTF-8", "accept window", "future", "is 0", "no value", "bucket", "empty", "trace_id", "span_id"):
        if word in reason:
            return word.replace(" ", "_").lower()
    return "other"
