"""Spans to RED series: requests, errors and a duration histogram.

Every span that handled a request counts: kind SERVER or CONSUMER, or a root
span of unspecified kind. Each is keyed by service, operation (the
`http.route` attribute when present, else the span name) and status class
(`2xx`..`5xx` from the HTTP status code, else `ok`/`error` from the span
status). A span is an error when its status is ERROR or its HTTP status is
5xx. Counts are aggregated per `window_s` window of span end time and stored
as delta sums and a delta histogram:

    apm.requests          sum, delta, monotonic, unit {request}
    apm.errors            sum, delta, monotonic, unit {request}
    apm.request.duration  histogram, delta, unit s

A point keeps up to three exemplar trace ids (the slowest span, then errors).
Past `max_series` distinct (service, operation, status class) keys, new keys
fold into operation `__overflow__` with attribute `otel.metric.overflow=true`
and the quality flag `cardinality_overflow`, the OpenTelemetry convention.
Spans themselves are not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import AdaptContext, Draft, Outcome
from telemetry_gateway.adapters.histogram import DurationHistogram
from telemetry_gateway.adapters.points import PointRows

OVERFLOW = "__overflow__"
SERVER, CONSUMER = 2, 5
STATUS_ERROR = 2


@dataclass(frozen=True)
class SpanFact:
    """What RED needs from one span, whatever format it came in."""

    service: str
    operation: str
    status_class: str
    error: bool
    start_ns: int
    end_ns: int
    trace_id: str


def status_class(http_status: str | None, span_error: bool) -> str:
    if http_status and http_status[:1] in "12345" and http_status.isdigit():
        return f"{http_status[0]}xx"
    return "error" if span_error else "ok"


def is_error(http_status: str | None, span_error: bool) -> bool:
    return span_error or bool(http_status and http_status.startswith("5") and http_status.isdigit())


@dataclass
class _Cell:
    count: int = 0
    errors: int = 0
    durations: DurationHistogram = field(default_factory=DurationHistogram)
    slowest: tuple[float, str] = (-1.0, "")
    error_traces: list[str] = field(default_factory=list)


class SeriesLimiter:
    """Distinct keys seen; past the limit new keys fold into one overflow key."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.seen: set[tuple[str, str, str]] = set()

    def admit(self, key: tuple[str, str, str]) -> bool:
        if key in self.seen:
            return True
        if len(self.seen) >= self.max_series:
            return False
        self.seen.add(key)
        return True


def red_rows(facts: list[SpanFact], ctx: AdaptContext, limiter: SeriesLimiter, sets: AttributeSets, outcome: Outcome,
             window_s: int = 10) -> Draft:
    """Request, error and duration points per (service, operation, status class) and window."""
    window_ns = window_s * 1_000_000_000
    cells: dict[tuple, _Cell] = {}
    oldest = max(ctx.received_ns - ctx.window.max_age_ns, 1)
    newest = ctx.received_ns + ctx.window.max_future_ns
    for f in facts:
        if f.end_ns < f.start_ns or f.end_ns == 0:
            outcome.reject("invalid_span", "span end time is missing or before its start")
            continue
        if not oldest <= f.end_ns <= newest:
            outcome.reject("too_old" if f.end_ns < oldest else "too_far_ahead", "span end time is outside the accept window")
            continue
        key = (f.service, f.operation, f.status_class)
        overflow = not limiter.admit(key)
        if overflow:
            key = (f.service, OVERFLOW, f.status_class)
        window = f.end_ns // window_ns * window_ns
        cell = cells.setdefault((key, window, overflow), _Cell())
        seconds = (f.end_ns - f.start_ns) / 1e9
        cell.count += 1
        cell.errors += f.error
        cell.durations.observe(seconds)
        if seconds > cell.slowest[0]:
            cell.slowest = (seconds, f.trace_id)
        if f.error and len(cell.error_traces) < 2:
            cell.error_traces.append(f.trace_id)
    rows = PointRows(sets)
    for ((service, operation, status), window, overflow), cell in cells.items():
        _add_cell(rows, service, operation, status, window, window + window_ns, overflow, cell)
    return rows.finish()


def _add_cell(rows: PointRows, service: str, operation: str, status: str, start: int, end: int,
              overflow: bool, cell: _Cell) -> None:
    attributes = {"operation": operation, "status_class": status}
    if overflow:
        attributes["otel.metric.overflow"] = "true"
    exemplars = [t for t in dict.fromkeys([cell.slowest[1], *cell.error_traces]) if t][:3]
    common = dict(time_ns=end, start_ns=start, attributes=attributes, resource={"service.name": service},
                  temporality="delta", scope=("telemetry-gateway/apm", "1"), exemplars=exemplars)
    for name, value in (("apm.requests", cell.count), ("apm.errors", cell.errors)):
        rows.add(name=name, kind="sum", monotonic=True, value=float(value), unit="{request}", **common)
        if overflow:
            rows.flag(len(rows) - 1, "cardinality_overflow")
    rows.add(name="apm.request.duration", unit="s", **cell.durations.point(), **common)
    if overflow:
        rows.flag(len(rows) - 1, "cardinality_overflow")
