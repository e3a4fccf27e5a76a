"""Network probe results, from any prober, as one set of probe series.

    probe.success          gauge 0/1
    probe.duration         gauge, s: the whole probe
    probe.phase.duration   gauge, s, attribute `probe.phase`: resolve, connect, tls, processing, transfer
    probe.http.status_code gauge (HTTP probes)

Every point carries `probe.target`, `probe.module`, `probe.kind` (http, tcp,
icmp, dns, snmp, ...) and `probe.location` (where the prober ran), so an SLO
on availability or latency reads the same series whether blackbox_exporter or
the gateway's own prober measured it. `from_blackbox` maps a blackbox_exporter
`/probe` scrape; `from_snmp_interfaces` maps snmp_exporter IF-MIB counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.prometheus.families import Sample

# blackbox metrics whose `phase` label names a phase; DNS time alone stands for
# `resolve` only where no phase metric reports it (tcp, dns modules).
BLACKBOX_PHASES = ("probe_http_duration_seconds", "probe_icmp_duration_seconds")
BLACKBOX_KINDS = ("http", "tcp", "icmp", "dns", "grpc")


@dataclass
class ProbeResult:
    target: str
    module: str
    kind: str
    location: str
    time_ns: int
    success: bool
    duration_s: float
    phases: dict[str, float] = field(default_factory=dict)
    status_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


def add_probe(rows: PointRows, result: ProbeResult, service: str) -> None:
    attrs = {**result.labels, "probe.target": result.target, "probe.module": result.module,
             "probe.kind": result.kind, "probe.location": result.location}
    common = dict(time_ns=result.time_ns, resource={"service.name": service}, scope=("telemetry-gateway/probes", "1"))
    rows.add(name="probe.success", kind="gauge", value=1.0 if result.success else 0.0, unit="1", attributes=attrs, **common)
    rows.add(name="probe.duration", kind="gauge", value=result.duration_s, unit="s", attributes=attrs, **common)
    for phase, seconds in sorted(result.phases.items()):
        rows.add(name="probe.phase.duration", kind="gauge", value=seconds, unit="s", attributes={**attrs, "probe.phase": phase}, **common)
    if result.status_code is not None:
        rows.add(name="probe.http.status_code", kind="gauge", value=float(result.status_code), unit="1", attributes=attrs, **common)


def from_blackbox(samples: list[Sample], target: str, module: str, location: str, time_ns: int) -> ProbeResult | None:
    """The probe result in a blackbox_exporter `/probe` scrape, or None if it holds none."""
    values = {s.name: s for s in samples}
    if "probe_success" not in values:
        return None
    phases: dict[str, float] = {}
    for s in samples:
        if s.name in BLACKBOX_PHASES and s.labels.get("phase"):
            phases[s.labels["phase"]] = phases.get(s.labels["phase"], 0.0) + s.value
    if "resolve" not in phases and "probe_dns_lookup_time_seconds" in values:
        phases["resolve"] = values["probe_dns_lookup_time_seconds"].value
    status = values.get("probe_http_status_code")
    kind = next((k for k in BLACKBOX_KINDS if module.startswith(k) or any(n.startswith(f"probe_{k}_") for n in values)), "other")
    return ProbeResult(
        target, module, kind, location, time_ns, values["probe_success"].value == 1.0,
        values["probe_duration_seconds"].value if "probe_duration_seconds" in values else 0.0,
        phases, int(status.value) if status is not None and status.value > 0 else None,
    )


def add_snmp_interfaces(rows: PointRows, samples: list[Sample], target: str, location: str, service: str) -> int:
    """IF-MIB octet counters as `network.io` (cumulative, By, direction and interface); returns points added."""
    added = 0
    for s in samples:
        direction = {"ifHCInOctets": "receive", "ifHCOutOctets": "transmit"}.get(s.name)
        if direction is None:
            continue
        interface = s.labels.get("ifName") or s.labels.get("ifDescr") or s.labels.get("ifIndex", "")
        rows.add(time_ns=s.timestamp_ms * 1_000_000, name="network.io", kind="sum", temporality="cumulative",
                 monotonic=True, value=s.value, unit="By", resource={"service.name": service},
                 attributes={"network.io.direction": direction, "network.interface.name": interface,
                             "probe.target": target, "probe.kind": "snmp", "probe.location": location},
                 scope=("telemetry-gateway/probes", "1"))
        added += 1
    return added
