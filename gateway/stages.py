"""Processing stages: what happens to finalized batches before they are routed.

The chain runs in this order, on one request's `Work`:

    red_series           span facts -> apm.* points (traces, Zipkin)
    span_rows            spans -> `spans` rows (apm.store_spans)
    log_to_metric        log records -> points, by the `log_metrics` rules
    units                values rescaled to base units (normalize.units)
    cumulative_to_delta  configured cumulative sums -> deltas (per-series state)
    catalog              resource attributes from the service catalog

Deriving stages come first so their points are normalized like any other.
Semantic-convention names are not a stage: the attribute-set registry renames
while it decodes, because the series id is hashed from the normalized names.

Each stage is a small class; one chain is built per tenant, so a stage that
keeps state (cumulative_to_delta's last values, red_series' series budget)
keeps it per tenant. Every stage counts the rows it drops or derives in the
request's account.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.adapters.apm.red import SeriesLimiter, red_rows
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Draft, Outcome
from telemetry_gateway.adapters.log_metrics import LogMetricRule, derive
from telemetry_gateway.adapters.normalize import CumulativeToDelta as DeltaState
from telemetry_gateway.adapters.normalize import ServiceCatalog, convert_units
from telemetry_gateway.gateway.batch import Batch, Provenance
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.schema import LOGS, POINTS, SPANS


@dataclass
class Work:
    """One request on its way through the stages."""

    provenance: Provenance
    context: AdaptContext
    outcome: Outcome
    batches: list[Batch] = field(default_factory=list)
    request: object = None         # the decoded request, for stages that read it (span rows)
    spans: object = None           # span facts, for red_series
    span_rows: Callable | None = None  # the format's request -> span rows adapter
    accepted: int = 0              # items kept after adapt and finalize (spans: by red_series)
    dropped: Counter = field(default_factory=Counter)   # stage -> rows
    derived: Counter = field(default_factory=Counter)   # (stage, table) -> rows

    def of(self, table) -> list[Batch]:
        return [b for b in self.batches if b.table is table]

    def add_derived(self, stage: str, batch: Batch) -> None:
        if batch.rows.num_rows:
            self.batches.append(batch)
            self.derived[(stage, batch.table.name)] += batch.rows.num_rows


class Stage(Protocol):
    name: str

    def process(self, work: Work) -> None: ...


class RedSeries:
    """Request, error and duration series from spans (`adapters.apm.red`).

    With `hold` (the spool is on), a request's points are held, one batch per
    window, for `gateway.red_windows` to merge with other requests' and write
    when the window closes; they are counted as derived then. Without it they
    are written at once, one row per request and window.
    """

    name = "red_series"

    def __init__(self, finalizer: Finalizer, sets: AttributeSets, limiter: SeriesLimiter, window_s: int,
                 hold: str = "") -> None:
        self.finalizer = finalizer
        self.sets = sets
        self.limiter = limiter
        self.window_s = window_s
        self.hold = hold

    def process(self, work: Work) -> None:
        if work.spans is None:
            return
        refused = work.outcome.rejected_count
        draft = red_rows(work.spans, work.context, self.limiter, self.sets, work.outcome, self.window_s)
        work.accepted = len(work.spans) - (work.outcome.rejected_count - refused)
        rows = self.finalizer.finish(draft, work.provenance, Outcome())
        if not self.hold:
            work.add_derived(self.name, Batch(POINTS, rows, work.provenance))
            return
        for window in _by_window(rows):
            work.batches.append(Batch(POINTS, window, work.provenance.derived(), hold=self.hold))


def _by_window(rows: pa.Table) -> list[pa.Table]:
    """RED rows split by window end (their `time`)."""
    ends = pc.cast(rows.column("time"), pa.int64())
    return [rows.filter(pc.equal(ends, end)) for end in pc.unique(ends).to_pylist()]


class SpanRows:
    """Every span as a row of `spans`, when apm.store_spans is on."""

    name = "span_rows"

    def __init__(self, finalizer: Finalizer, sets: AttributeSets) -> None:
        self.finalizer = finalizer
        self.sets = sets

    def process(self, work: Work) -> None:
        if work.span_rows is None:
            return
        result: AdaptResult = work.span_rows(work.request, self.sets)
        provenance = work.provenance.derived()
        rows = self.finalizer.finish_all(result, provenance, SPANS)
        work.dropped[self.name] += result.outcome.rejected_count
        work.add_derived(self.name, Batch(SPANS, rows, provenance))


class LogToMetric:
    """Points from log records by the `log_metrics` rules."""

    name = "log_to_metric"

    def __init__(self, finalizer: Finalizer, sets: AttributeSets, rules: list[LogMetricRule], window_s: int) -> None:
        self.finalizer = finalizer
        self.sets = sets
        self.rules = rules
        self.window_s = window_s

    def process(self, work: Work) -> None:
        for logs in work.of(LOGS):
            draft: Draft = derive(self.rules, logs.rows, self.sets, self.window_s)
            provenance = work.provenance.derived(source_kind="log")
            rows = self.finalizer.finish(draft, provenance, Outcome())
            work.add_derived(self.name, Batch(POINTS, rows, provenance))


class Units:
    """Values in ms, kB, % ... rescaled to s, By, 1 (`adapters.normalize.convert_units`)."""

    name = "units"

    def process(self, work: Work) -> None:
        for batch in work.of(POINTS):
            batch.rows = convert_units(batch.rows)


class CumulativeToDelta:
    """Configured cumulative sums stored as deltas; a series' first point only sets the baseline."""

    name = "cumulative_to_delta"

    def __init__(self, patterns: list[str]) -> None:
        self.state = DeltaState(patterns)

    def process(self, work: Work) -> None:
        for batch in work.of(POINTS):
            before = batch.rows.num_rows
            batch.rows = self.state.apply(batch.rows)
            work.dropped[self.name] += before - batch.rows.num_rows


class Catalog:
    """Resource attributes from the service catalog, after the series id (a catalog edit splits no series)."""

    name = "catalog"

    def __init__(self, catalog: ServiceCatalog) -> None:
        self.catalog = catalog

    def process(self, work: Work) -> None:
        for batch in work.batches:
            if "resource_attributes" in batch.rows.column_names:
                batch.rows = self.catalog.enrich(batch.rows)


@dataclass
class Chain:
    stages: list[Stage]

    def run(self, work: Work) -> None:
        for stage in self.stages:
            stage.process(work)
        work.batches = [b for b in work.batches if b.rows.num_rows]

