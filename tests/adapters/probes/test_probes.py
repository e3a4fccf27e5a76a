"""Probe series from recorded blackbox_exporter and snmp_exporter output, against golden rows."""

from __future__ import annotations

from pathlib import Path

from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.probes import ProbeResult, add_probe, add_snmp_interfaces, from_blackbox
from telemetry_gateway.gateway.components.scrape.poller import parse
from telemetry_gateway.adapters.attributes import AttributeSets
from tests.adapters.otlp.helpers import NS, context, finalized
from tests.rows import check_golden, plain_rows

TESTDATA = Path(__file__).parent / "testdata"
SCRAPED_MS = 1_800_000_000_000
NOW = SCRAPED_MS * 1_000_000 + NS


def scraped(name: str):
    return parse((TESTDATA / name).read_text(), "text/plain; version=0.0.4", SCRAPED_MS).samples


def rows_for(result: ProbeResult) -> list[dict]:
    rows = PointRows(AttributeSets())
    add_probe(rows, result, "blackbox")
    return plain_rows(finalized(rows.finish(), context(NOW, source_kind="scrape")).table)


def test_blackbox_http_probe_matches_golden_rows():
    result = from_blackbox(scraped("blackbox_http.prom"), "http://127.0.0.1/", "http_2xx", "lab-1", SCRAPED_MS * 1_000_000)
    assert (result.kind, result.success, result.status_code) == ("http", True, 200)
    # resolve comes from the phase metric, not added twice with probe_dns_lookup_time_seconds.
    assert set(result.phases) == {"resolve", "connect", "tls", "processing", "transfer"}
    check_golden(rows_for(result), TESTDATA / "blackbox_http.expected.json")


def test_blackbox_tcp_probe_matches_golden_rows():
    result = from_blackbox(scraped("blackbox_tcp.prom"), "127.0.0.1:80", "tcp_connect", "lab-1", SCRAPED_MS * 1_000_000)
    assert (result.kind, result.success, result.status_code, set(result.phases)) == ("tcp", True, None, {"resolve"})
    check_golden(rows_for(result), TESTDATA / "blackbox_tcp.expected.json")


def test_a_scrape_without_probe_success_is_no_probe():
    assert from_blackbox(scraped("snmp_if_mib.prom"), "x", "y", "z", 0) is None


def test_snmp_interface_counters_match_golden_rows():
    rows = PointRows(AttributeSets())
    added = add_snmp_interfaces(rows, scraped("snmp_if_mib.prom"), "127.0.0.1:161", "lab-1", "switch")
    table = finalized(rows.finish(), context(NOW, source_kind="scrape")).table
    assert added == table.num_rows and added % 2 == 0
    got = plain_rows(table)
    assert {r["attributes"]["network.io.direction"] for r in got} == {"receive", "transmit"}
    assert {r["unit"] for r in got} == {"By"} and {r["kind"] for r in got} == {"sum"}
    check_golden(sorted(got, key=lambda r: (r["attributes"]["network.interface.name"], r["attributes"]["network.io.direction"])),
                 TESTDATA / "snmp_if_mib.expected.json")
