"""Prometheus samples to points, after the OpenTelemetry Prometheus compatibility rules.

* Type comes from metadata (`# TYPE`, or remote-write metadata) for the
  sample's family; without it from the name: `_total` is a counter, `_bucket`
  with `le` a histogram part, a `quantile` label a summary part, anything else
  a gauge.
* Counters become cumulative monotonic sums; gauges, unknown, info and
  stateset become gauges.
* Classic histograms and summaries are kept as their component series, the
  way Prometheus itself stores them: `_bucket{le}` and `_count` as cumulative
  monotonic sums, `_sum` as a cumulative sum, quantile series as gauges, each
  with the family's unit and help. A remote-write request does not carry a
  histogram's series together (Prometheus shards and batches by series), so
  assembling them per request would produce partial histograms; components
  are exact, and the `prometheus_histograms` view (schema migration 4)
  assembles them at query time, across requests.
* `job` and `instance` become the resource attributes `service.name` and
  `service.instance.id`; other labels are point attributes. Names stay as
  Prometheus spells them; the unit comes from metadata or a known suffix.
* The staleness marker (one exact NaN) becomes a point with the "no recorded
  value" flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.adapters.base import Outcome
from telemetry_gateway.adapters.normalize import Names
from telemetry_gateway.adapters.points import PointRows, is_stale_marker

SUFFIX_UNITS = (("_seconds", "s"), ("_bytes", "By"), ("_ratio", "1"), ("_celsius", "Cel"), ("_percent", "%"),
                ("_meters", "m"), ("_volts", "V"), ("_amperes", "A"), ("_joules", "J"), ("_hertz", "Hz"))
PART_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total", "_info", "_gcount", "_gsum")
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class FamilyInfo:
    type: str = "unknown"
    help: str = ""
    unit: str = ""


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int


Lookup = Callable[[str], "FamilyInfo | None"]


def known_family(name: str, lookup: Lookup) -> FamilyInfo | None:
    """The metadata a sample name resolves to, if any: its own, or its family's (`X` for `X_count`)."""
    info = lookup(name)
    if info is not None:
        return info
    for suffix in PART_SUFFIXES:
        if name.endswith(suffix):
            info = lookup(name[: -len(suffix)])
            if info is not None:
                return info
    return None


def resolve(name: str, labels: dict[str, str], lookup: Lookup) -> tuple[str, FamilyInfo]:
    """(family name, info) of a sample name."""
    info = lookup(name)
    if info is not None:
        return name, info
    for suffix in PART_SUFFIXES:
        if name.endswith(suffix):
            info = lookup(name[: -len(suffix)])
            if info is not None:
                return name[: -len(suffix)], info
    if name.endswith("_bucket") and "le" in labels:
        return name[:-7], FamilyInfo("histogram")
    if "quantile" in labels:
        return name, FamilyInfo("summary")
    if name.endswith("_total"):
        return name, FamilyInfo("counter")
    return name, FamilyInfo("gauge")


def unit_of(family: str, info: FamilyInfo) -> str:
    if info.unit:
        return info.unit
    base = family.removesuffix("_total")
    for suffix, unit in SUFFIX_UNITS:
        if base.endswith(suffix):
            return unit
    return ""


def split_resource(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    attributes = {k: v for k, v in labels.items() if k not in ("job", "instance")}
    resource = {}
    if "job" in labels:
        resource["service.name"] = labels["job"]
    if "instance" in labels:
        resource["service.instance.id"] = labels["instance"]
    return attributes, resource


def kind_of(name: str, family: str, info: FamilyInfo, labels: dict[str, str]) -> tuple[str, bool]:
    """(kind, monotonic) for one sample series."""
    if info.type == "counter":
        return "sum", True
    if info.type in ("histogram", "gaugehistogram", "summary"):
        suffix = name[len(family):]
        if suffix in ("_bucket", "_count", "_gcount") or (suffix == "" and info.type != "summary"):
            return ("sum", True) if info.type != "gaugehistogram" else ("gauge", False)
        if suffix in ("_sum", "_gsum"):
            return ("sum", False) if info.type != "gaugehistogram" else ("gauge", False)
    return "gauge", False


_PREPARED_MAX = 500_000


_UNSET = FamilyInfo("unset")


def series_handle(rows: PointRows, key, name: str, labels: dict[str, str], lookup: Lookup, names: Names,
                  info: FamilyInfo | None = _UNSET) -> int:
    """Register a series in `rows`; see `prepared_series`."""
    return rows.add_series(prepared_series(rows.labels, key, name, labels, lookup, names, info))


def prepared_series(sets: AttributeSets, key, name: str, labels: dict[str, str], lookup: Lookup, names: Names,
                    info: FamilyInfo | None = _UNSET) -> tuple:
    """What `PointRows.add_series` takes for a series; what it costs to work out (type, unit, names,
    label set ids) is cached across batches under `key`. `info` is `known_family(name, lookup)`
    where the caller has it already."""
    # Keyed on the family's metadata, not the sample name's: metadata for `X` arriving after
    # `X_count` was first seen must retype it (a fallback type cached for good was a bug).
    if info is _UNSET:
        info = known_family(name, lookup)
    cache = sets.series_cache  # per tenant, like the label sets whose ids it holds
    cached = cache.get(key)
    if cached is not None and (cached[0] is info or cached[0] == info):
        return cached[1]
    family, resolved = resolve(name, labels, lookup)
    kind, monotonic = kind_of(name, family, resolved, labels)
    attributes, resource = split_resource(labels)
    keys, values = names.keys(tuple(attributes), tuple(attributes.values()))
    prepared = PointRows.series_info_of(name=names.metric(name), kind=kind, monotonic=monotonic,
                                        temporality="cumulative" if kind == "sum" else "unspecified",
                                        unit=unit_of(family, resolved), description=resolved.help,
                                        attributes_id=sets.id_of_labels(dict(zip(keys, values))),
                                        resource_id=sets.id_of_labels(resource))
    if len(cache) >= _PREPARED_MAX:
        cache.clear()
    cache[key] = (info, prepared)
    return prepared


def add_samples(rows: PointRows, samples: Iterable[Sample], lookup: Lookup, outcome: Outcome,
                names: Names | None = None) -> None:
    """Append one point per sample to `rows`; repeated (series, timestamp) pairs are refused.

    The hot loop of scrapes: each series usually comes once per page, so the duplicate check
    keeps a set only for series that come again, and each name's metadata is looked up once."""
    names = names or Names()
    handles: dict[tuple, tuple[int, int]] = {}  # series -> (handle, first timestamp)
    seen: set[tuple[int, int]] = set()
    infos: dict[str, FamilyInfo | None] = {}
    cache = rows.labels.series_cache
    for s in samples:
        series_key = (s.name, tuple(s.labels.items()))
        ts = s.timestamp_ms
        entry = handles.get(series_key)
        if entry is None:
            info = infos[s.name] if s.name in infos else infos.setdefault(s.name, known_family(s.name, lookup))
            cached = cache.get(series_key)
            if cached is not None and (cached[0] is info or cached[0] == info):
                handle = rows.add_series(cached[1])
            else:
                handle = series_handle(rows, series_key, s.name, s.labels, lookup, names, info)
            handles[series_key] = (handle, ts)
        else:
            handle, first = entry
            if ts == first or (handle, ts) in seen:
                outcome.reject("duplicate", "duplicate sample (same series and timestamp)")
                continue
            seen.add((handle, ts))
        value = s.value
        stale = value != value and is_stale_marker(value)
        rows.value(handle, ts * NS_PER_MS, math.nan if stale else value, stale)
