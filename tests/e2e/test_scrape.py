"""The scrape poller against real node_exporter and blackbox_exporter, and hostile targets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import pytest
from aiohttp import web

from tests.gateway_process import free_port
from tests.peers import blackbox_exporter, node_exporter

pytestmark = pytest.mark.integration

FAST = {"interval": "1s", "timeout": "800ms", "jitter": 0.0}


def wait_rows(gw, sql: str, check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = gw.rows(sql)
        if check(rows):
            return rows
        time.sleep(0.3)
    return rows


def latest(gw, metric: str, where: str = "1") -> list[dict]:
    return gw.rows(
        "SELECT service_name AS job, resource_attributes['service.instance.id'] AS instance, attributes, "
        f"argMax(value, time) AS v FROM telemetry.metric_points WHERE metric_name = '{metric}' AND {where} "
        "GROUP BY job, instance, attributes ORDER BY job, instance"
    )


def exposed_value(port: int, metric: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    raise AssertionError(f"{metric} not exposed")


def test_scraping_real_node_exporter_and_blackbox_probes(start_gateway, tmp_path):
    node, node_port = node_exporter(tmp_path)
    blackbox, bb_port = blackbox_exporter(tmp_path)
    try:
        admin_port, grpc_port = free_port(), free_port()
        probe = f"http://127.0.0.1:{bb_port}/probe"
        gw = start_gateway({
            "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
            "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}},
            "pollers": {"location": "lab-1", "scrape": {**FAST, "targets": [
                {"url": f"http://127.0.0.1:{node_port}/metrics", "job": "node", "labels": {"site": "lab"}},
                {"url": f"{probe}?module=http_2xx&target=http://127.0.0.1:{admin_port}/healthz", "job": "blackbox_http"},
                {"url": f"{probe}?module=tcp_connect&target=127.0.0.1:{grpc_port}", "job": "blackbox_tcp"},
            ]}},
        })
        up = wait_rows(gw, "SELECT service_name AS job, argMax(value, time) AS v FROM telemetry.metric_points "
                           "WHERE metric_name = 'up' GROUP BY job ORDER BY job", lambda rows: len(rows) == 3 and all(r["v"] == 1 for r in rows))
        assert up == [{"job": "blackbox_http", "v": 1}, {"job": "blackbox_tcp", "v": 1}, {"job": "node", "v": 1}]
        [mem] = latest(gw, "node_memory_MemTotal_bytes")
        assert mem["v"] == exposed_value(node_port, "node_memory_MemTotal_bytes")
        assert mem["job"] == "node" and mem["instance"] == f"127.0.0.1:{node_port}" and mem["attributes"] == {"site": "lab"}
        [scraped] = latest(gw, "scrape_samples_scraped", "service_name = 'node'")
        assert scraped["v"] > 100
        cpu = gw.rows("SELECT any(kind) AS kind, any(is_monotonic) AS m, any(unit) AS unit FROM telemetry.metric_points "
                      "WHERE metric_name = 'node_cpu_seconds_total'")
        assert cpu == [{"kind": "sum", "m": True, "unit": "s"}]
        success = {r["job"]: r["v"] for r in latest(gw, "probe_success")}
        assert success == {"blackbox_http": 1, "blackbox_tcp": 1}
        [status] = latest(gw, "probe_http_status_code")
        assert status["v"] == 200
        assert {r["job"] for r in latest(gw, "scrape_duration_seconds")} == {"blackbox_http", "blackbox_tcp", "node"}
        # The same results as probe series, the shape the built-in prober writes too.
        probes = {r["attributes"]["probe.kind"]: r for r in latest(gw, "probe.success")}
        assert set(probes) == {"http", "tcp"} and all(r["v"] == 1 for r in probes.values())
        assert probes["http"]["attributes"] == {"probe.target": f"http://127.0.0.1:{admin_port}/healthz",
                                                "probe.module": "http_2xx", "probe.kind": "http", "probe.location": "lab-1"}
        phases = {r["attributes"]["probe.phase"] for r in latest(gw, "probe.phase.duration", "attributes['probe.kind'] = 'http'")}
        assert {"resolve", "connect", "processing", "transfer"} <= phases
        [code] = latest(gw, "probe.http.status_code")
        assert code["v"] == 200
    finally:
        node.stop()
        blackbox.stop()


class HostileTargets:
    """A local server whose endpoints misbehave in the ways targets do."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/endless", self.endless)
        app.router.add_get("/cardinality", self.cardinality)
        app.router.add_get("/garbage", self.garbage)
        app.router.add_get("/labels", self.labels)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    async def slow(self, request):
        await asyncio.sleep(5)
        return web.Response(text="slow_metric 1\n")

    async def endless(self, request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(10**6):
            await response.write(f'endless_metric{{n="{i}"}} 1\n'.encode())
        return response

    async def cardinality(self, request):
        return web.Response(text="".join(f'exploding{{id="{i}"}} 1\n' for i in range(5000)))

    async def garbage(self, request):
        return web.Response(text="this is { not an exposition\x00\n")

    async def labels(self, request):
        return web.Response(text='# TYPE labelled gauge\nlabelled{job="impostor",zone="a"} 7\n')

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def test_hostile_targets_fail_their_scrape_and_nothing_else(start_gateway):
    hostile = HostileTargets()
    gw = start_gateway({"pollers": {"scrape": {**FAST, "sample_limit": 1000, "body_limit_mib": 0.05, "targets": [
        {"url": hostile.url(path), "job": path.strip("/")} for path in ("/slow", "/endless", "/cardinality", "/garbage", "/labels")
    ]}}})
    up = wait_rows(gw, "SELECT service_name AS job, argMax(value, time) AS v FROM telemetry.metric_points "
                       "WHERE metric_name = 'up' GROUP BY job ORDER BY job", lambda rows: len(rows) == 5)
    assert up == [{"job": "cardinality", "v": 0}, {"job": "endless", "v": 0}, {"job": "garbage", "v": 0},
                  {"job": "labels", "v": 1}, {"job": "slow", "v": 0}]
    stored = gw.rows("SELECT DISTINCT metric_name FROM telemetry.metric_points WHERE metric_name IN "
                     "('slow_metric', 'endless_metric', 'exploding') ")
    assert stored == []
    # honor_labels is off: the target's job wins, the scraped one is kept as exported_job.
    [labelled] = latest(gw, "labelled")
    assert labelled["job"] == "labels" and labelled["attributes"] == {"exported_job": "impostor", "zone": "a"}
    assert labelled["v"] == 7
    with urllib.request.urlopen(gw.admin_url + "/readyz") as r:
        assert r.status == 200


def test_file_sd_targets_come_and_go_with_staleness_markers(start_gateway, tmp_path):
    node, node_port = node_exporter(tmp_path)
    try:
        sd = tmp_path / "targets.json"
        sd.write_text(json.dumps([{"targets": [f"127.0.0.1:{node_port}"], "labels": {"job": "from_file", "rack": "r1"}}]))
        gw = start_gateway({"pollers": {"scrape": {**FAST, "file_sd": [str(sd)], "refresh_interval": "500ms"}}})
        assert wait_rows(gw, "SELECT 1 FROM telemetry.metric_points WHERE metric_name = 'node_memory_MemTotal_bytes' "
                             "AND service_name = 'from_file' AND attributes['rack'] = 'r1' LIMIT 1", lambda rows: rows)
        sd.write_text("[]")
        stale = wait_rows(gw, "SELECT point_flags, quality_flags FROM telemetry.metric_points WHERE "
                              "metric_name = 'node_memory_MemTotal_bytes' AND point_flags = 1", lambda rows: rows)
        assert stale and stale[0] == {"point_flags": 1, "quality_flags": ["no_recorded_value"]}
    finally:
        node.stop()
