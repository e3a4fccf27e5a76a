"""The ingest pipeline, in the order data flows through it:

    receive    a component's listener or poller (gateway.components.<name>)
       |         hands over one payload, its format and the Caller
       v
    admit      access.admit_write: principal, tenant, policy version
       |         (401 / 403 before anything is decoded)   (gateway.access)
       v
    decode     format.decode: bytes -> request            (malformed -> 400)
    adapt      format.adapt: request -> Drafts             (adapters/, pure)
       v
    finalize   accept window, shared flags, series id, provenance, defaults
       v
    process    the tenant's chain: red_series, span_rows, log_to_metric,
       |         units, cumulative_to_delta, catalog       (gateway.stages)
       v
    route      router.route: region of every row, residency refusals  (gateway.router)
       v
    sink       keep: spool, then the regional store        (gateway.sink)
       v
    account    /metrics and one ingest_log row per request  (gateway.accounting)

Everything from decode to route runs on one adapter thread, so a large
request never freezes the listeners and per-tenant state needs no locks.
Nothing is kept until every batch of the request is built, so an error never
follows partly kept data. The receiver answers from the returned report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from telemetry_gateway.adapters.apm.red import SeriesLimiter
from telemetry_gateway.adapters.base import AcceptWindow, AdaptContext
from telemetry_gateway.adapters.log_metrics import LogMetricRule
from telemetry_gateway.adapters.normalize import ServiceCatalog
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata
from telemetry_gateway.adapters.columns import constant
from telemetry_gateway.gateway import accounting, adapting, stages
from telemetry_gateway.gateway.adapting import Adapted
from telemetry_gateway.gateway.access import Access, Admission, CompiledPolicy, Credentials
from telemetry_gateway.gateway.audit import Audit
from telemetry_gateway.gateway.batch import Batch, Caller, Provenance, new_batch_id
from telemetry_gateway.gateway.components import FORMATS, Format
from telemetry_gateway.gateway.config import GatewayConfig
from telemetry_gateway.gateway.deadletter import DeadLetters
from telemetry_gateway.gateway.errors import GatewayError, PermissionDenied, Unauthenticated
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.memory import EXPANSION, MemoryLimiter
from telemetry_gateway.gateway.quotas import Rates, TenantThrottled
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.red_windows import HOLD as RED_HOLD
from telemetry_gateway.gateway.red_windows import RedWindows
from telemetry_gateway.gateway.report import IngestReport
from telemetry_gateway.gateway.retry import RetryPolicy
from telemetry_gateway.gateway.router import RegionRouter
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.sink import SpoolStoreSink
from telemetry_gateway.gateway.spool.spool import Spool
from telemetry_gateway.gateway.stages import Work
from telemetry_gateway.gateway.store.regions import RegionStores
from telemetry_gateway.gateway.store.writer import WriterSettings
from telemetry_gateway.gateway.tenants import SavedFamilies, Tenants, TenantState, attribute_sets
from telemetry_gateway.policies.load import LoadedPolicy
from telemetry_gateway.schema import INGEST_LOG, POINTS, conform

NS = 1_000_000_000
AUDIT_INTERVAL_S = 5.0
log = logging.getLogger(__name__)


class IngestPipeline:
    def __init__(self, config: GatewayConfig, stores: RegionStores, telemetry: SelfMetrics,
                 policy: LoadedPolicy | None = None) -> None:
        self.config = config
        self.stores = stores
        self.telemetry = telemetry
        limits = config.limits
        self.finalizer = Finalizer(AcceptWindow(int(limits.max_age * NS), int(limits.max_future * NS)))
        self.catalog = ServiceCatalog(config.normalize.service_catalog)
        self.log_rules = [LogMetricRule.build(**rule.model_dump()) for rule in config.log_metrics]
        self.tenants = Tenants(self._tenant_state)
        self.families = SavedFamilies(config.store.path / "state" / "prometheus-metadata.json")
        self._saver: asyncio.Task | None = None
        self._auditor: asyncio.Task | None = None
        self.router = RegionRouter(list(config.store.regions))
        self.access = Access(policy)
        self.audit = Audit(telemetry)
        self.rates = Rates()
        self.spool = _spool(config)
        self.dead_letters = DeadLetters(config.store.path / "deadletter")
        self.sink = SpoolStoreSink(stores, self.spool, self.dead_letters, _writer_settings(config), telemetry,
                                   limits.retry_after)
        self.memory = MemoryLimiter(limits.max_memory_mib << 20, limits.retry_after, lambda: self.sink.queued_bytes)
        # RED points wait for their window to close only where they can wait durably (the spool).
        self.red = RedWindows(self.sink, telemetry, config.apm.lateness) if self.sink.holds else None
        if self.red is not None:
            self.sink.hold_for(RED_HOLD, self.red.add)
        self._red_task: asyncio.Task | None = None
        self._adapter = ThreadPoolExecutor(1, thread_name_prefix="adapter")
        self._errors = RateLimitedLog(log)

    @property
    def writers(self):
        return self.sink.writers

    def _tenant_state(self, tenant: str) -> TenantState:
        c = self.config
        n = c.normalize
        sets = attribute_sets(c)
        window_s = int(c.apm.window)
        limiter = SeriesLimiter(c.apm.max_series, c.apm.series_idle_timeout)
        hold = RED_HOLD if self.red is not None else ""
        chain: list[stages.Stage] = [stages.RedSeries(self.finalizer, sets, limiter, window_s, hold)]
        if c.apm.store_spans:
            chain.append(stages.SpanRows(self.finalizer, sets))
        if self.log_rules:
            chain.append(stages.LogToMetric(self.finalizer, sets, self.log_rules, window_s))
        if n.units:
            chain.append(stages.Units())
        chain += [stages.CumulativeToDelta(n.cumulative_to_delta), stages.Catalog(self.catalog)]
        prometheus = PrometheusMetadata(limits=sets.limits, families=self.families.loaded.get(tenant))
        return TenantState(tenant, sets, prometheus, stages.Chain(chain))

    def start(self) -> None:
        self.sink.start()
        if self.red is not None:
            self._red_task = asyncio.get_running_loop().create_task(self.red.run(), name="red-windows")
        self._saver = asyncio.get_running_loop().create_task(self._save_families_every(5.0), name="save-families")
        self._auditor = asyncio.get_running_loop().create_task(self._audit_every(AUDIT_INTERVAL_S), name="audit")

    async def _save_families_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.save_families()
            except Exception as exc:  # never end: the next round tries again
                self._errors.warning("save-families", "could not save Prometheus metadata: %s", exc)

    async def _audit_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_audit()
            except Exception as exc:  # never end: the rows wait for the next round
                self._errors.warning("audit", "could not keep audit rows: %s", exc)

    async def flush_audit(self) -> None:
        batches = self.audit.take(self.router.default_region)
        if not batches:
            return
        try:
            await self.sink.keep(batches)
        except BaseException:
            self.audit.restore(batches)  # kept for the next round, not dropped
            raise

    async def save_families(self) -> None:
        snapshot = await self._on_adapter_thread(SavedFamilies.snapshot, self.tenants.states())
        if snapshot is not None:
            await asyncio.to_thread(self.families.save, snapshot)

    def health(self) -> list[str]:
        """Why data is not being stored; empty when all of it makes progress."""
        problems = self.sink.health()
        if self.red is not None:
            problems += self.red.health()
            if self._red_task is not None and self._red_task.done() and not self._red_task.cancelled():
                problems.append(f"RED windows: the window writer stopped ({self._red_task.exception()!r})")
        return problems

    async def ingest(self, format_name: str, payload, caller: Caller, source_id: str = "",
                     credentials: Credentials | None = None, admission: Admission | None = None) -> IngestReport:
        """Admit (unless the receiver did, before reading the body), decode, adapt, finalize, process,
        route and keep one payload; answer once every item's fate is decided."""
        fmt = FORMATS[format_name]
        admission = admission or self.admit(format_name, caller, credentials)
        return await self._keep(fmt, admission, fmt.size(payload), self._process, fmt, payload, admission, source_id)

    async def ingest_adapted(self, format_name: str, adapted: Adapted, admission: Admission,
                             source_id: str) -> IngestReport:
        """Rows a listener worker decoded, adapted and finalized: the rest of `ingest`'s way."""
        fmt = FORMATS[format_name]
        # The limiter counts a body as the EXPANSION times it that decoding it takes; rows come decoded, and
        # what they still become here (routed and conformed copies, derived rows) is about twice them.
        size = max(1, 2 * adapted.rows.nbytes // EXPANSION)
        return await self._keep(fmt, admission, size, self._process_adapted, fmt, adapted, admission, source_id)

    async def _keep(self, fmt: Format, admission: Admission, size: int, prepare, *args) -> IngestReport:
        limits = admission.limits
        with self.memory.hold(size, admission.tenant, limits.memory_share if limits else 1.0):
            work, account = await self._on_adapter_thread(self._prepare, fmt, admission.tenant, prepare, *args)
            if limits is not None:
                self.rates.spend(admission.tenant, limits, account.accepted + sum(account.rejected.values()))
            await self.sink.keep(work.batches)
        accounting.count(self.telemetry, account)
        if work.outcome.rejected:
            self._log_refusals(fmt, work)
        return IngestReport(account.accepted, work.outcome.rejected_count, work.outcome.message(fmt.noun))

    def _log_refusals(self, fmt: Format, work: Work) -> None:
        """A sender whose items are refused may get no answer (syslog) or ignore it: say why in the log, once
        per format every few seconds, with the first reason as a sample."""
        outcome = work.outcome
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(outcome.by_code().items()))
        (_, sample), _ = next(iter(outcome.rejected.items()))
        self._errors.warning(f"refused-{fmt.name}", "%d %s from %s refused (%s); for example: %s",
                             outcome.rejected_count, fmt.noun, work.provenance.source_id, codes, sample)

    async def _on_adapter_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._adapter, fn, *args)

    async def admit_request(self, format_name: str, caller: Caller, credentials: Credentials | None) -> Admission:
        """`admit` for listeners, which may run in a worker process where this is a call to the gateway's."""
        return self.admit(format_name, caller, credentials)

    def admit(self, format_name: str, caller: Caller, credentials: Credentials | None) -> Admission:
        """Who is sending, for which tenant, under which policy version; raises Unauthenticated,
        PermissionDenied or TenantThrottled. Receivers call it before reading a body, so a caller
        without the right to send costs no decompression or parsing."""
        try:
            admission = self.access.admit_write(caller, credentials)
            if admission.limits is not None:
                self.rates.admit(admission.tenant, admission.limits)
        except (Unauthenticated, PermissionDenied, TenantThrottled) as exc:
            policy = self.access.current
            throttled = isinstance(exc, TenantThrottled)
            # A stable reason: audit rows are counted per reason, and a throttle's message names its wait.
            reason = "the tenant is over its rate limit" if throttled else str(exc)
            who, tenant = (admission.caller, admission.tenant) if throttled else (caller, "")
            region = policy.home_region(tenant) if throttled else ""  # the tenant's audit stays at home
            self.audit.write_refused(format_name, who, reason, tenant, region, policy.version if policy else "")
            raise
        return admission

    def _prepare(self, fmt: Format, tenant: str, prepare, *args):
        try:
            return prepare(*args)
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing of the request is kept: refused whole
            raise adapting.adapter_failed(fmt, tenant, exc, self.telemetry, self._errors) from None

    def _process(self, fmt: Format, payload, admission: Admission, source_id: str):
        request = adapting.decode(fmt, payload, admission.tenant, self.telemetry)
        provenance = adapting.provenance(fmt, admission.caller, admission.tenant, source_id)
        state = self.tenants.get(admission.tenant)
        context = AdaptContext(provenance.received_ns, self.finalizer.window)
        result = fmt.adapt(request, context, state)
        work = Work(provenance, context, result.outcome, request=request, spans=result.spans,
                    span_rows=fmt.span_rows if result.spans is not None else None)
        rows = self.finalizer.finish_all(result, provenance, fmt.table) if fmt.table is not None else None
        return self._process_rows(fmt, work, state, rows, admission)

    def _process_adapted(self, fmt: Format, adapted: Adapted, admission: Admission, source_id: str):
        """A worker's rows under a batch id of this process, which alone makes ids (each is unique)."""
        provenance = adapting.provenance(fmt, admission.caller, admission.tenant, source_id, adapted.received_ns)
        rows = adapted.rows
        at = rows.schema.get_field_index("batch_id")
        rows = rows.set_column(at, rows.schema.field(at), constant(provenance.batch_id, pa.string(), rows.num_rows))
        work = Work(provenance, AdaptContext(provenance.received_ns, self.finalizer.window), adapted.outcome)
        return self._process_rows(fmt, work, self.tenants.get(admission.tenant), rows, admission)

    def _process_rows(self, fmt: Format, work: Work, state: TenantState, rows: pa.Table | None, admission: Admission):
        """Series budget, the tenant's chain, routing, the request's account and audit."""
        policy, provenance = admission.policy, work.provenance
        if rows is not None:
            if admission.limits is not None and fmt.table is POINTS:
                rows = _within_series_budget(rows, state, admission.limits.max_series, work.outcome)
            work.batches.append(Batch(fmt.table, rows, provenance))
            work.accepted = rows.num_rows
        state.chain.run(work)
        # Nothing after the chain reads the decoded request, and it can be large: do not hold it
        # while the sink waits for the spool's fsync.
        work.request = work.spans = None
        self._route(work, fmt, policy)
        account = accounting.RequestAccount.of(work)
        work.batches.append(accounting.log_batch(work, account, self.router.region_for(provenance, policy)))
        if policy is not None:
            refused = {reason: n for (code, reason), n in work.outcome.rejected.items() if code == "residency"}
            self.audit.write_decided(provenance, account.accepted + sum(account.rejected.values()), refused,
                                     {b.region for b in work.batches if b.table is not INGEST_LOG}, policy.version)
        return work, account

    def _route(self, work: Work, fmt: Format, policy: CompiledPolicy | None) -> None:
        """Every batch to its regions. Refused rows of the request's own items are counted in its answer
        (partial success); those of derived batches (RED points, log metrics) are counted as dropped."""
        routed_batches = []
        for batch in work.batches:
            routed = self.router.route(batch, policy)
            routed_batches += [_conformed(b) for b in routed.batches]
            for reason, n in routed.refused.items():
                if batch.table is fmt.table:
                    work.outcome.reject("residency", reason, n)
                    work.accepted -= n
                else:
                    work.dropped["residency"] += n
        work.batches = routed_batches

    async def redrive(self, dead_letter_id: str) -> str:
        """Send a dead-lettered batch to the store again, under a new batch id
        (the old id is finished in the spool). Returns the new id. Refused
        again, it is dead-lettered under its old id."""
        old = await asyncio.to_thread(self.dead_letters.load, dead_letter_id)
        provenance = Provenance(old.provenance.format, old.provenance.source_kind, old.provenance.source_id,
                                Caller("admin"), new_batch_id(), time.time_ns(), old.provenance.tenant or "default",
                                old.region, dead_letter_id=dead_letter_id)
        await self.sink.keep([Batch(old.table, conform(old.table, old.rows), provenance)])
        await asyncio.to_thread(self.dead_letters.remove, dead_letter_id)
        return provenance.batch_id

    async def drain(self) -> None:
        """Store what is queued within the drain timeout (runs while receivers drain). RED windows
        still open stay held in the spool, and are written after the next start."""
        if self._red_task is not None:
            self._red_task.cancel()
            await self.red.close_due()
        if self._saver is not None:
            self._saver.cancel()
            await self.save_families()
        if self._auditor is not None:
            self._auditor.cancel()
            await self.flush_audit()
        await self.sink.drain(self.config.shutdown.drain_timeout)

    async def close(self) -> None:
        """After receivers and writers have stopped: close the spool and threads."""
        await self.sink.close()
        self._adapter.shutdown(wait=True)


def _within_series_budget(rows, state: TenantState, limit: int, outcome) -> object:
    if not limit or not rows.num_rows:
        return rows
    refused = state.series.admit(rows.column("series_id"), limit)
    if refused is None:
        return rows
    outcome.reject("series_limit", f"the tenant's limit of {limit} series is reached", int(refused.sum()))
    return rows.filter(pa.array(~refused))


def _conformed(batch: Batch) -> Batch:
    batch.rows = conform(batch.table, batch.rows)
    return batch


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
        config.store.batch.ingest_log_max_delay,
    )


__all__ = ["IngestPipeline", "IngestReport"]
