"""The built-in synthetic prober (HTTP and TCP) writes probe series."""

from __future__ import annotations

import time

import pytest

from tests.gateway_process import free_port

pytestmark = pytest.mark.integration


def test_http_and_tcp_probes(start_gateway):
    admin, grpc_port, closed = free_port(), free_port(), free_port()
    gw = start_gateway({
        "admin": {"endpoint": f"127.0.0.1:{admin}"},
        "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}},
        "pollers": {"location": "edge-7", "probes": {"interval": "1s", "timeout": "2s", "targets": [
            {"kind": "http", "target": f"http://127.0.0.1:{admin}/healthz", "labels": {"team": "sre"}},
            {"kind": "http", "target": f"http://127.0.0.1:{admin}/missing", "module": "expect_200", "expect_status": [200]},
            {"kind": "tcp", "target": f"127.0.0.1:{grpc_port}"},
            {"kind": "tcp", "target": f"127.0.0.1:{closed}"},
        ]}},
    })
    query = ("SELECT attributes['probe.target'] AS target, argMax(value, time) AS v FROM telemetry.metric_points "
             "WHERE metric_name = '{name}' AND source_kind = 'probe' GROUP BY target ORDER BY target")
    deadline = time.monotonic() + 30
    success = []
    while len(success) < 4 and time.monotonic() < deadline:
        success = gw.rows(query.format(name="probe.success"))
        time.sleep(0.3)
    assert {r["target"]: r["v"] for r in success} == {
        f"http://127.0.0.1:{admin}/healthz": 1, f"http://127.0.0.1:{admin}/missing": 0,
        f"127.0.0.1:{grpc_port}": 1, f"127.0.0.1:{closed}": 0,
    }
    codes = {r["target"]: r["v"] for r in gw.rows(query.format(name="probe.http.status_code"))}
    assert codes == {f"http://127.0.0.1:{admin}/healthz": 200, f"http://127.0.0.1:{admin}/missing": 404}
    phases = gw.rows("SELECT DISTINCT attributes['probe.phase'] AS p FROM telemetry.metric_points WHERE metric_name = "
                     f"'probe.phase.duration' AND attributes['probe.target'] = 'http://127.0.0.1:{admin}/healthz' ORDER BY p")
    assert [r["p"] for r in phases] == ["connect", "processing", "resolve", "transfer"]
    [healthz] = gw.rows("SELECT attributes FROM telemetry.metric_points WHERE metric_name = 'probe.success' "
                        f"AND attributes['probe.target'] = 'http://127.0.0.1:{admin}/healthz' LIMIT 1")
    assert healthz["attributes"] == {"team": "sre", "probe.target": f"http://127.0.0.1:{admin}/healthz",
                                     "probe.module": "http", "probe.kind": "http", "probe.location": "edge-7"}
