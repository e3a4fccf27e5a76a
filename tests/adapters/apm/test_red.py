from __future__ import annotations

import json

from telemetry_gateway.adapters.apm import zipkin
from telemetry_gateway.adapters.apm.red import SeriesLimiter, SpanFact, red_rows
from telemetry_gateway.adapters.histogram import DURATION_BOUNDS
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import Outcome
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import plain_rows

NOW = 1_800_000_000 * NS
WINDOW_END = NOW // (10 * NS) * (10 * NS)


def fact(operation: str, status: str, seconds: float, error: bool = False, trace: str = "ab" * 16) -> SpanFact:
    end = WINDOW_END - NS
    return SpanFact("checkout", operation, status, error, end - int(seconds * 1e9), end, trace)


def rows_of(facts, limiter=None):
    ctx, outcome = context(NOW, source_kind="apm"), Outcome()
    result = finalized(red_rows(facts, ctx.adapt, limiter or SeriesLimiter(100), AttributeSets(), outcome), ctx, outcome)
    return result, {(r["metric_name"], r["attributes"].get("operation"), r["attributes"].get("status_class")): r
                    for r in plain_rows(result.table)}


def test_requests_errors_and_durations_per_operation_and_status_class():
    result, rows = rows_of([
        fact("/pay", "2xx", 0.02, trace="01" * 16), fact("/pay", "2xx", 0.2), fact("/pay", "2xx", 2.0, trace="02" * 16),
        fact("/pay", "5xx", 0.5, error=True, trace="03" * 16), fact("/cart", "4xx", 0.01),
    ])
    assert result.outcome.rejected_count == 0
    assert rows[("apm.requests", "/pay", "2xx")]["value"] == 3
    assert rows[("apm.errors", "/pay", "2xx")]["value"] == 0
    assert rows[("apm.errors", "/pay", "5xx")]["value"] == 1
    assert rows[("apm.requests", "/cart", "4xx")]["value"] == 1
    duration = rows[("apm.request.duration", "/pay", "2xx")]
    assert duration["kind"] == "histogram" and duration["temporality"] == "delta" and duration["unit"] == "s"
    assert duration["count"] == 3 and abs(duration["sum"] - 2.22) < 1e-9
    assert duration["bucket_bounds"] == DURATION_BOUNDS
    expected = [0] * (len(DURATION_BOUNDS) + 1)
    for i in (2, 6, 10):  # 0.02 -> le 0.025, 0.2 -> le 0.25, 2.0 -> le 2.5
        expected[i] = 1
    assert duration["bucket_counts"] == expected
    assert (duration["min"], duration["max"]) == (0.02, 2.0)
    assert duration["exemplar_trace_ids"] == ["02" * 16]
    assert rows[("apm.requests", "/pay", "5xx")]["exemplar_trace_ids"] == ["03" * 16]
    requests = rows[("apm.requests", "/pay", "2xx")]
    assert (requests["start_time"], requests["time"]) == (WINDOW_END - 10 * NS, WINDOW_END)
    assert requests["service_name"] == "checkout" and requests["source_kind"] == "apm"


def test_cardinality_past_the_limit_folds_into_one_overflow_series_per_service():
    limiter = SeriesLimiter(5)
    facts = [fact(f"/item/{i}", "2xx" if i % 2 else "5xx", 0.01, error=not i % 2) for i in range(50)]
    other = SpanFact("search", "/q", "2xx", False, WINDOW_END - 2 * NS, WINDOW_END - NS, "cd" * 16)
    result, _ = rows_of([*facts, other], limiter)
    rows = plain_rows(result.table)
    overflow = [r for r in rows if r["quality_flags"] == ["cardinality_overflow"]]
    # One series per metric for the service, with only the overflow attribute; status classes fold in too.
    assert sorted((r["metric_name"], r["service_name"]) for r in overflow) == [
        ("apm.errors", "checkout"), ("apm.request.duration", "checkout"), ("apm.requests", "checkout")]
    assert {tuple(r["attributes"].items()) for r in overflow} == {(("otel.metric.overflow", "true"),)}
    values = {r["metric_name"]: r["value"] for r in overflow}
    assert values["apm.requests"] == 45 and values["apm.errors"] == 22
    # Another service has a budget of its own.
    assert [r["value"] for r in rows if r["service_name"] == "search" and r["metric_name"] == "apm.requests"] == [1]


def test_the_budget_is_per_service_and_idle_keys_are_forgotten():
    limiter = SeriesLimiter(2, idle_s=60)
    t = NOW
    assert limiter.admit("a", ("/1", "ok"), t) and limiter.admit("a", ("/2", "ok"), t)
    assert not limiter.admit("a", ("/3", "ok"), t + NS)            # full, and nothing idle yet
    assert limiter.admit("b", ("/3", "ok"), t + NS)                # another service's budget
    assert limiter.admit("a", ("/2", "ok"), t + 30 * NS)           # known keys stay, and stay fresh
    assert limiter.admit("a", ("/3", "ok"), t + 61 * NS)           # /1 idle for 61 s: forgotten
    assert set(limiter.services["a"]) == {("/2", "ok"), ("/3", "ok")}


def test_zipkin_v2_spans():
    spans = [
        {"traceId": "5af7183fb1d4cf5f", "id": "1", "kind": "SERVER", "name": "get /pay", "timestamp": 1_800_000_000_000_000,
         "duration": 150_000, "localEndpoint": {"serviceName": "shop"}, "tags": {"http.route": "/pay", "http.status_code": "503"}},
        {"traceId": "5af7183fb1d4cf5f", "id": "2", "parentId": "1", "kind": "CLIENT", "name": "db", "timestamp": 1_800_000_000_010_000,
         "duration": 10_000, "localEndpoint": {"serviceName": "shop"}},
        {"traceId": "nothex!", "id": "3", "kind": "SERVER", "timestamp": 1, "duration": 1},
        "not a span",
    ]
    facts, refused = zipkin.span_facts(zipkin.decode(json.dumps(spans).encode()))
    assert refused == 2
    assert facts == [SpanFact("shop", "/pay", "5xx", True, 1_800_000_000_000_000_000, 1_800_000_000_150_000_000, "5af7183fb1d4cf5f")]


def test_spans_without_a_proper_end_are_refused():
    result, rows = rows_of([SpanFact("s", "op", "ok", False, 10, 0, "")])
    assert rows == {} and result.outcome.reasons() == {"span end time is missing or before its start": 1}


def test_zipkin_span_rows_refuse_endless_durations_and_pad_short_ids():
    # Found by the fuzzer: a duration of 1e400 (infinity) raised out of the span rows.
    from telemetry_gateway.adapters.attributes import AttributeSets

    now_us = 1_800_000_000_000_000
    spans = [{"traceId": "a" * 32, "id": "b1", "parentId": "1", "timestamp": now_us, "duration": 5},
             {"traceId": "a" * 32, "id": "b2", "timestamp": now_us, "duration": float("inf")}]
    result = finalized(zipkin.spans_to_arrow(spans, AttributeSets()), context(now_us * 1000))
    assert result.outcome.reasons() == {"span not stored: not a valid Zipkin v2 span": 1}
    row = result.table.to_pylist()[0]
    assert (row["span_id"], row["parent_span_id"]) == ("00000000000000b1", "0000000000000001")
