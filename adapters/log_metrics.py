"""Log-to-metric rules: series derived from log records, whatever their source.

A rule picks records (by service name, optionally) and parses each body with
a regular expression of named groups. Per window of record time it counts the
matching records as a delta sum named after the rule, labelled by the groups
it lists (plus `status_class`, derived from a `status` group, `2xx`..`5xx`,
and `severity`, the OpenTelemetry short name: TRACE, DEBUG, INFO, WARN, ERROR,
FATAL or UNSPECIFIED, from the record's severity number, or its text when the
number is unset; so `warn`, `warning` and syslog's `warning` are one series). Optionally it sums a numeric group (`<name>.<group>`, e.g.
bytes) and makes a delta histogram of a duration group (`<name>.duration`,
in seconds after `duration_scale`).

Presets cover the common formats: `nginx_access` / `apache_combined` (the
combined log format, with an optional trailing request time) and
`severity_by_service` (records per severity per service). The stock combined
format has no request time, so it yields counts and bytes but no latency; a
format that ends in `$request_time` (nginx, seconds) or `%D` (Apache,
microseconds: `duration_scale: 1e-6`) adds `<name>.duration`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.adapters.histogram import DurationHistogram
from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import Draft
from telemetry_gateway.adapters.logrows import severity_name
from telemetry_gateway.adapters.points import PointRows

COMBINED = (r'^(?P<client>\S+) \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+)[^"]*" '
            r'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "[^"]*" "[^"]*")?(?: (?P<duration>\d+(?:\.\d+)?))?')
PRESETS = {
    "nginx_access": {"regex": COMBINED, "labels": ["method", "status_class"], "sum": "bytes", "duration": "duration"},
    "apache_combined": {"regex": COMBINED, "labels": ["method", "status_class"], "sum": "bytes", "duration": "duration"},
    "severity_by_service": {"regex": "", "labels": ["severity"]},
}


@dataclass(frozen=True)
class LogMetricRule:
    name: str
    regex: str = ""
    service: str = ""
    labels: tuple[str, ...] = ()
    sum: str = ""
    duration: str = ""
    duration_scale: float = 1.0
    pattern: re.Pattern | None = field(default=None, compare=False)

    @classmethod
    def build(cls, name: str, preset: str = "", **fields) -> "LogMetricRule":
        merged = {**PRESETS.get(preset, {}), **{k: v for k, v in fields.items() if v not in (None, "", [], ())}}
        merged["labels"] = tuple(merged.get("labels", ()))
        regex = merged.get("regex", "")
        return cls(name=name, pattern=re.compile(regex) if regex else None, **merged)


@dataclass
class _Cell:
    count: int = 0
    total: float = 0.0
    durations: DurationHistogram = field(default_factory=DurationHistogram)


def _labels(rule: LogMetricRule, groups: dict[str, str], severity: tuple[int, str]) -> tuple[tuple[str, str], ...]:
    out = []
    for label in rule.labels:
        if label == "status_class":
            status = groups.get("status") or ""
            out.append((label, f"{status[0]}xx" if status[:1].isdigit() else "unknown"))
        elif label == "severity":
            out.append((label, severity_name(*severity)))
        else:
            out.append((label, groups.get(label) or ""))
    return tuple(out)


def derive(rules: list[LogMetricRule], logs: pa.Table, sets: AttributeSets, window_s: int = 10) -> Draft:
    """Points for every rule over a `log_records` table."""
    if not rules or logs.num_rows == 0:
        return PointRows(sets).finish()
    window_ns = window_s * 10**9
    bodies = logs.column("body").to_pylist()
    services = logs.column("service_name").to_pylist()
    severities = list(zip(logs.column("severity_number").to_pylist(), logs.column("severity_text").to_pylist()))
    event = pc.cast(logs.column("time"), pa.int64()).to_pylist()
    cells: dict[tuple, _Cell] = {}
    for rule in rules:
        for body, service, severity, t in zip(bodies, services, severities, event):
            if rule.service and service != rule.service:
                continue
            groups: dict[str, str] = {}
            if rule.pattern is not None:
                match = rule.pattern.search(body)
                if match is None:
                    continue
                groups = {k: v for k, v in match.groupdict().items() if v is not None}
            window = t // window_ns * window_ns
            cell = cells.setdefault((rule, service, _labels(rule, groups, severity), window), _Cell())
            _count(cell, rule, groups)
    rows = PointRows(sets)
    for (rule, service, labels, window), cell in cells.items():
        _emit(rows, rule, service, dict(labels), window, window + window_ns, cell)
    return rows.finish()


def _count(cell: _Cell, rule: LogMetricRule, groups: dict[str, str]) -> None:
    cell.count += 1
    value = groups.get(rule.sum) if rule.sum else None
    if value and value.replace(".", "", 1).isdigit():
        cell.total += float(value)
    duration = groups.get(rule.duration) if rule.duration else None
    if duration and duration.replace(".", "", 1).isdigit():
        cell.durations.observe(float(duration) * rule.duration_scale)


def _emit(rows: PointRows, rule: LogMetricRule, service: str, labels: dict[str, str], start: int, end: int, cell: _Cell) -> None:
    common = dict(time_ns=end, start_ns=start, attributes=labels, resource={"service.name": service},
                  temporality="delta", scope=("telemetry-gateway/log-metrics", "1"))
    rows.add(name=rule.name, kind="sum", monotonic=True, value=float(cell.count), unit="{record}", **common)
    if rule.sum:
        rows.add(name=f"{rule.name}.{rule.sum}", kind="sum", monotonic=True, value=cell.total,
                 unit="By" if rule.sum == "bytes" else "", **common)
    if rule.duration and cell.durations.count:
        rows.add(name=f"{rule.name}.duration", unit="s", **cell.durations.point(), **common)
