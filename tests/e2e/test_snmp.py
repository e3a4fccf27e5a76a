"""The poller scraping a real snmp_exporter, with the module shipped in deploy/snmp.yml, walking a real snmpd."""

from __future__ import annotations

import time

import pytest

from tests.peers import snmp_agent, snmp_exporter

pytestmark = pytest.mark.integration


def test_interface_counters_become_network_io(start_gateway, tmp_path):
    agent, agent_port = snmp_agent(tmp_path)
    exporter, exporter_port = snmp_exporter(tmp_path)
    try:
        url = f"http://127.0.0.1:{exporter_port}/snmp?target=127.0.0.1:{agent_port}&module=if_mib"
        gw = start_gateway({"pollers": {"location": "lab-1", "scrape": {
            "interval": "1s", "timeout": "900ms", "jitter": 0.0, "targets": [{"url": url, "job": "switch"}]}}})
        deadline = time.monotonic() + 30
        rows = []
        while time.monotonic() < deadline and not any(r["iface"] == "lo" for r in rows):
            rows = gw.rows(
                "SELECT attributes['network.interface.name'] AS iface, attributes['network.io.direction'] AS dir, "
                "any(kind) AS kind, any(unit) AS unit, any(attributes['probe.target']) AS target, max(value) AS v "
                "FROM telemetry.metric_points WHERE metric_name = 'network.io' GROUP BY iface, dir ORDER BY iface, dir")
            time.sleep(0.3)
        lo = [r for r in rows if r["iface"] == "lo"]
        assert [r["dir"] for r in lo] == ["receive", "transmit"]
        assert all(r["kind"] == "sum" and r["unit"] == "By" and r["target"] == f"127.0.0.1:{agent_port}" for r in lo)
        assert lo[0]["v"] > 0
        # Every metric of the shipped module arrives, labelled by interface name.
        raw = gw.rows("SELECT metric_name AS m, groupUniqArray(attributes['ifName']) AS n FROM telemetry.metric_points "
                      "WHERE has(mapKeys(attributes), 'ifIndex') GROUP BY m ORDER BY m")
        assert [r["m"] for r in raw] == ["ifAdminStatus", "ifHCInOctets", "ifHCOutOctets", "ifHighSpeed", "ifInDiscards",
                                         "ifInErrors", "ifOperStatus", "ifOutDiscards", "ifOutErrors"]
        assert all("lo" in r["n"] for r in raw)
    finally:
        exporter.stop()
        agent.terminate()
        agent.wait(10)
