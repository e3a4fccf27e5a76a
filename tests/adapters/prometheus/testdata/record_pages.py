"""Record real exposition pages for the parser's tests.

Run `python tests/adapters/prometheus/testdata/record_pages.py` (needs the
Debian packages prometheus, prometheus-node-exporter,
prometheus-blackbox-exporter, prometheus-snmp-exporter and snmpd). It saves,
as each exporter served them, the text format and, where the exporter offers
it, OpenMetrics (none of Debian 12's do, so OpenMetrics comes from
prometheus_client's own exposition):

    node_exporter.txt             node_exporter's /metrics
    prometheus.txt                Prometheus's own /metrics
    blackbox_probe.txt            blackbox_exporter's /probe (tcp_connect to Prometheus)
    snmp_if_mib.txt               snmp_exporter's /snmp (deploy/snmp.yml, a local snmpd)
    python_client.txt / .om       prometheus_client: process and GC collectors, and one
                                  metric of each type, in both formats
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent / "pages"
sys.path.insert(0, str(Path(__file__).parents[4]))

from tests.peers import blackbox_exporter, node_exporter, prometheus, snmp_agent, snmp_exporter  # noqa: E402

TEXT = "text/plain;version=0.0.4"


def fetch(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "openmetrics" not in accept or "openmetrics" in response.headers["Content-Type"]
        return response.read()


def python_client() -> tuple[bytes, bytes]:
    from prometheus_client import (CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, exposition,
                                   gc_collector, process_collector)
    from prometheus_client.openmetrics import exposition as om

    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    Counter("jobs_processed", "Jobs processed.", ["queue"], registry=registry).labels("a \\ \"b\"").inc(3)
    Gauge("queue_depth_bytes", "Queue depth.", unit="bytes", registry=registry).set(12.5)
    Histogram("rpc_seconds", "RPC latency.", ["method"], registry=registry).labels("get").observe(0.3)
    Summary("payload_size", "Payload sizes.", registry=registry).observe(512)
    Info("build", "Build information.", registry=registry).info({"version": "1.2.3", "branch": "main"})
    Enum("state", "Service state.", states=["up", "down"], registry=registry).state("up")
    return exposition.generate_latest(registry), om.generate_latest(registry)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        node, node_port = node_exporter(work)
        prom, prom_port = prometheus(work, {"node": [f"127.0.0.1:{node_port}"]}, None)
        box, box_port = blackbox_exporter(work)
        agent, agent_port = snmp_agent(work)
        snmp, snmp_port = snmp_exporter(work)
        try:
            time.sleep(3)
            for name, url in (("node_exporter", f"http://127.0.0.1:{node_port}/metrics"),
                              ("prometheus", f"http://127.0.0.1:{prom_port}/metrics")):
                (HERE / f"{name}.txt").write_bytes(fetch(url, TEXT))
            text, openmetrics = python_client()
            (HERE / "python_client.txt").write_bytes(text)
            (HERE / "python_client.om").write_bytes(openmetrics)
            probe = f"http://127.0.0.1:{box_port}/probe?module=tcp_connect&target=127.0.0.1:{prom_port}"
            (HERE / "blackbox_probe.txt").write_bytes(fetch(probe, TEXT))
            walk = f"http://127.0.0.1:{snmp_port}/snmp?module=if_mib&target=127.0.0.1:{agent_port}"
            (HERE / "snmp_if_mib.txt").write_bytes(fetch(walk, TEXT))
        finally:
            for peer in (node, prom, box, snmp):
                peer.stop()
            agent.terminate()


if __name__ == "__main__":
    main()
