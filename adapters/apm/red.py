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

Cardinality: each service may have `max_series` (operation, status class)
keys; a key not seen for `idle_s` is forgotten, so a service's budget frees
up as operations go quiet. Past the budget, a service's new keys fold into
one overflow series per service, the OpenTelemetry SDK's shape: no operation
or status class, only the attribute `otel.metric.overflow=true`, and the
quality flag `cardinality_overflow` (its requests and errors still count).
Spans themselves are not stored here.

This module aggregates one request's spans. Across requests, the gateway
merges the points of each (series, window) before they are written
(`gateway.red_windows`).
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
    """Per service, the (operation, status class) keys seen and when last; past `max_series` a new key
    is refused (it folds into the overflow series) unless idle keys can be forgotten to make room."""

    def __init__(self, max_series: int, idle_s: float = 3600.0) -> None:
        self.max_series = max_series
        self.idle_ns = int(idle_s * 1e9)
        self.services: dict[str, dict[tuple[str, str], int]] = {}
        self._next_sweep: dict[str, int] = {}

    def admit(self, service: str, key: tuple[str, str], now_ns: int) -> bool:
        keys = self.services.setdefault(service, {})
        if key in keys or len(keys) < self.max_series or self._sweep(service, keys, now_ns):
            keys[key] = now_ns
            return True
        return False

    def _sweep(self, service: str, keys: dict, now_ns: int) -> bool:
        """Forget idle keys; at most once per tenth of the idle time, so a flood of new keys costs no scans."""
        if now_ns < self._next_sweep.get(service, 0):
            return False
        self._next_sweep[service] = now_ns + self.idle_ns // 10
        for key in [k for k, seen in keys.items() if seen < now_ns - self.idle_ns]:
            del keys[key]
        return len(keys) < self.max_series


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
        overflow = not limiter.admit(f.service, (f.operation, f.status_class), ctx.received_ns)
        key = (f.service, OVERFLOW, OVERFLOW) if overflow else (f.service, f.operation, f.status_class)
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
    attributes = {"otel.metric.overflow": "true"} if overflow else {"operation": operation, "status_class": status}
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
