"""The OpenTelemetry JS SDK (from npm, tests/clients/js) as a second SDK beside the Python one.

Every metric instrument kind with cumulative and delta temporality, logs, and
traces through the SimpleSpanProcessor (one span per request), over gRPC,
HTTP/protobuf and HTTP/JSON, all gzipped; stored rows compared exactly with
what `emit.mjs` sends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.durability.test_durability import wait_for
from tests.receivers.otlp_requests import unique

pytestmark = pytest.mark.integration
CLIENT = Path(__file__).parents[1] / "clients" / "js"
NS = 1_000_000_000
JS_BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]  # the SDK's default, in ms


def node() -> str:
    binary = shutil.which("node")
    assert binary, "the JS client needs Node.js (deploy/test.sh installs its packages with npm ci)"
    assert (CLIENT / "node_modules").exists(), f"run: npm ci --prefix {CLIENT}"
    return binary


def emit(gateway, protocol: str, service: str, temporality: str, end_ms: int) -> list[str]:
    result = subprocess.run(
        [node(), "emit.mjs", protocol, f"http://{gateway.grpc_endpoint}", gateway.http_url, service, temporality,
         str(end_ms)], cwd=CLIENT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["traceIds"]


def expected_metrics(temporality: str) -> dict[str, dict]:
    monotonic_kind = temporality  # counters and histograms follow the preference; up-down counters stay cumulative
    latency_buckets = [0] * (len(JS_BOUNDS) + 1)
    for ms in (12, 250, 3000):
        latency_buckets[next(i for i, b in enumerate(JS_BOUNDS) if ms <= b) if ms <= JS_BOUNDS[-1] else len(JS_BOUNDS)] += 1
    return {
        "js.requests /a": {"kind": "sum", "temporality": monotonic_kind, "is_monotonic": True, "unit": "{request}", "value": 5.0},
        "js.requests /b": {"kind": "sum", "temporality": monotonic_kind, "is_monotonic": True, "unit": "{request}", "value": 7.0},
        "js.queue": {"kind": "sum", "temporality": "cumulative", "is_monotonic": False, "unit": "{item}", "value": 7.0},
        "js.temperature": {"kind": "gauge", "temporality": "unspecified", "is_monotonic": False, "unit": "Cel", "value": 21.5},
        "js.cpu.time": {"kind": "sum", "temporality": monotonic_kind, "is_monotonic": True, "unit": "s", "value": 3.5},
        "js.connections": {"kind": "sum", "temporality": "cumulative", "is_monotonic": False, "unit": "", "value": 4.0},
        # ms rescaled to the base unit s, bounds and sum alike, and flagged as converted.
        "js.latency /a": {"kind": "histogram", "temporality": monotonic_kind, "is_monotonic": False, "unit": "s",
                          "count": 3, "sum": 3.262, "min": 0.012, "max": 3.0,
                          "bucket_bounds": [b / 1000 for b in JS_BOUNDS], "bucket_counts": latency_buckets},
    }


def stored_metrics(gateway, service: str) -> dict[str, dict]:
    rows = gateway.rows(
        "SELECT metric_name, attributes, kind, temporality, is_monotonic, unit, value, count, sum, min, max, bucket_bounds, "
        "bucket_counts, scope_name, scope_version, resource_attributes['service.version'] AS version "
        f"FROM telemetry.metric_points WHERE service_name = '{service}' AND scope_name = 'js-client'")
    out = {}
    for r in rows:
        route = r.pop("attributes").get("route")
        assert (r.pop("scope_name"), r.pop("scope_version"), r.pop("version")) == ("js-client", "0.1.0", "1.2.3")
        key = f"{r.pop('metric_name')} {route}" if route else r.pop("metric_name")
        assert key not in out, f"{key} stored twice"
        out[key] = r
    return out


def matches(stored: dict, expected: dict) -> bool:
    for key, value in expected.items():
        got = stored[key]
        if isinstance(value, float):
            if abs(got - value) > 1e-9:
                return False
        elif isinstance(value, list) and value and isinstance(value[0], float):
            if len(got) != len(value) or any(abs(a - b) > 1e-12 for a, b in zip(got, value)):
                return False
        elif got != value:
            return False
    return True


@pytest.mark.parametrize("protocol", ["grpc", "proto", "json"])
@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_the_js_sdk_over_each_protocol_is_stored_exactly(gateway, protocol, temporality):
    service = unique(f"js_{protocol}_{temporality}")
    end_ms = (time.time_ns() // (10 * NS) * 10 - 2) * 1000  # in a window that has ended: written 300 ms after
    trace_ids = emit(gateway, protocol, service, temporality, end_ms)

    expected = expected_metrics(temporality)
    assert wait_for(lambda: len(stored_metrics(gateway, service)) == len(expected), timeout=30)
    stored = stored_metrics(gateway, service)
    assert set(stored) == set(expected)
    for key, want in expected.items():
        assert matches(stored[key], want), (key, stored[key], want)

    logs = gateway.wait_rows(
        "SELECT toUnixTimestamp64Milli(time) AS ms, severity_number, severity_text, body, attributes, scope_name "
        f"FROM telemetry.log_records WHERE service_name = '{service}' ORDER BY time", 2)
    assert logs == [
        {"ms": end_ms, "severity_number": 9, "severity_text": "INFO", "body": "order placed",
         "attributes": {"order": "A-1", "amount": "12.5", "items": "3", "paid": "true"}, "scope_name": "js-client"},
        {"ms": end_ms + 1, "severity_number": 17, "severity_text": "ERROR", "body": "payment failed",
         "attributes": {"order": "A-2"}, "scope_name": "js-client"},
    ]

    # Four spans in four requests: one row per series for the window.
    red = gateway.wait_rows(
        "SELECT metric_name AS m, attributes['status_class'] AS cls, value, count, sum, exemplar_trace_ids AS ex, "
        "toUnixTimestamp64Milli(time) AS end_ms FROM telemetry.metric_points "
        f"WHERE service_name = '{service}' AND scope_name = 'telemetry-gateway/apm'", 6)
    by_key = {(r["m"], r["cls"]): r for r in red}
    assert len(by_key) == 6 and {r["end_ms"] for r in red} == {end_ms // 10_000 * 10_000 + 10_000}
    assert by_key[("apm.requests", "2xx")]["value"] == 3 and by_key[("apm.requests", "5xx")]["value"] == 1
    assert by_key[("apm.errors", "5xx")]["value"] == 1 and by_key[("apm.errors", "2xx")]["value"] == 0
    duration = by_key[("apm.request.duration", "2xx")]
    assert duration["count"] == 3 and abs(duration["sum"] - 0.96) < 1e-9
    assert duration["ex"][0] == trace_ids[2]  # the slowest (900 ms) first
    assert by_key[("apm.errors", "5xx")]["ex"] == [trace_ids[3]]
