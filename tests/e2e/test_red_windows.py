"""RED series from one-span-per-request senders: one row per (series, window), durable while the window is open.

The Python SDK's SimpleSpanProcessor exports each span in a request of its
own, as the JS one does (the JS SDK itself runs in tests/e2e/test_js_sdk.py).
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.durability.test_durability import wait_for
from tests.receivers.otlp_requests import unique

pytestmark = pytest.mark.integration
NS = 1_000_000_000


def one_request_per_span(gateway, service: str, durations: list[float], end_ns: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{gateway.http_url}/v1/traces")))
    tracer = provider.get_tracer("serverless")
    for seconds in durations:
        span = tracer.start_span("GET /hello", kind=SpanKind.SERVER, start_time=end_ns - int(seconds * NS),
                                 attributes={"http.route": "/hello", "http.response.status_code": 200})
        span.end(end_time=end_ns)  # exported now, alone
    provider.shutdown()


def red_rows(gateway, service: str) -> list[dict]:
    return gateway.rows(
        "SELECT metric_name AS m, toUnixTimestamp(time) AS t, value, count, quality_flags AS f FROM telemetry.metric_points "
        f"WHERE service_name = '{service}' ORDER BY m, t, f")


def traces_accepted(gateway) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in gateway.metrics_text().splitlines()
               if line.startswith('gateway_accepted_total{format="otlp_traces"'))


def window_end(seconds_ago: int) -> int:
    return (time.time_ns() // (10 * NS) - seconds_ago // 10) * 10 * NS - 2 * NS


def test_one_span_per_request_makes_one_row_per_series_and_window(gateway):
    service = unique("lambda")
    end = window_end(0)
    spans_before = traces_accepted(gateway)
    one_request_per_span(gateway, service, [0.01, 0.02, 0.03, 0.5], end)
    assert wait_for(lambda: len(red_rows(gateway, service)) == 3, timeout=30)
    rows = {r["m"]: r for r in red_rows(gateway, service)}
    assert rows["apm.requests"]["value"] == 4 and rows["apm.errors"]["value"] == 0
    assert rows["apm.request.duration"]["count"] == 4
    assert {r["f"] == [] for r in rows.values()} == {True}
    # Accounting counts spans (4), not the rows they became (12 held, 3 written).
    assert traces_accepted(gateway) - spans_before == 4
    # A span for the same window once it is written: a row of its own, flagged late.
    time.sleep(0.5)
    one_request_per_span(gateway, service, [0.04], end)
    assert wait_for(lambda: len(red_rows(gateway, service)) == 6, timeout=30)
    late = [r for r in red_rows(gateway, service) if r["f"] == ["late"]]
    assert sorted((r["m"], r["value"] if r["m"] != "apm.request.duration" else r["count"]) for r in late) == [
        ("apm.errors", 0), ("apm.request.duration", 1), ("apm.requests", 1)]


def test_spans_of_an_open_window_survive_sigkill_and_the_window_is_written_once(start_gateway):
    gw = start_gateway({"apm": {"lateness": "1h"}})
    service = unique("killed")
    one_request_per_span(gw, service, [0.1, 0.2, 0.3], window_end(0))
    time.sleep(0.5)
    assert red_rows(gw, service) == []  # acknowledged, held: the window is open for an hour
    gw.kill()
    gw.reconfigure({"apm": {"lateness": "300ms"}})
    gw.start()
    assert wait_for(lambda: len(red_rows(gw, service)) == 3, timeout=30)
    assert {r["m"]: r["value"] for r in red_rows(gw, service) if r["m"] != "apm.request.duration"} == {
        "apm.errors": 0, "apm.requests": 3}
    # Written: killing and starting again replays nothing of it.
    time.sleep(0.5)
    gw.kill()
    gw.start()
    time.sleep(2)
    assert len(red_rows(gw, service)) == 3
    assert gw.metric("gateway_spool_replayed_batches_total") == 0


def test_without_the_spool_each_request_is_written_at_once(start_gateway):
    gw = start_gateway({"spool": {"enabled": False}, "apm": {"lateness": "1h"}})
    service = unique("unspooled")
    one_request_per_span(gw, service, [0.1, 0.2], window_end(0))
    assert wait_for(lambda: len(red_rows(gw, service)) == 6, timeout=30)
    assert [r["value"] for r in red_rows(gw, service) if r["m"] == "apm.requests"] == [1, 1]
