"""Normalization shared by every adapter, so a query never cares where a number came from.

* Names (`Names`): metric and attribute names with a known OpenTelemetry
  semantic-conventions spelling are renamed (the tables below, extended by
  config). Adapters apply it before hashing, so the series id is computed on
  the normalized names.
* Units (`convert_units`): values in ms, us, ns, kB, MB, percent, ... become
  s, By, 1 (ratio); gauges, sums, histogram sums/min/max/bounds and summary
  values are rescaled, and the point is flagged `unit_converted`.
  Exponential histograms keep their unit (their buckets are powers of a base
  and cannot be rescaled by a factor).
* Cumulative to delta (`CumulativeToDelta`), for configured metrics: each
  point becomes the increase since the previous one of its series; a drop is
  a counter reset (the point's value is the increase, flag `counter_reset`);
  the first point of a series only sets the baseline and is not stored.
* Enrichment (`ServiceCatalog`): resource attributes from a catalog file by
  service name (owner team, tier, environment), added after the series id is
  computed, so a catalog change does not split series.
"""

from __future__ import annotations

import fnmatch
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

METRIC_NAMES = {
    # Older HTTP semantic conventions, still sent by many instrumentations.
    "http.server.duration": "http.server.request.duration",
    "http.client.duration": "http.client.request.duration",
    "http.server.request.size": "http.server.request.body.size",
    "http.server.response.size": "http.server.response.body.size",
    "rpc.server.duration": "rpc.server.call.duration",
}
ATTRIBUTE_NAMES = {
    "http.method": "http.request.method",
    "http.status_code": "http.response.status_code",
    "http.scheme": "url.scheme",
    "http.target": "url.path",
    "http.url": "url.full",
    "net.host.name": "server.address",
    "net.host.port": "server.port",
    "net.peer.name": "server.address",
    "net.peer.port": "server.port",
    "net.sock.peer.addr": "network.peer.address",
    "deployment.environment": "deployment.environment.name",
}
UNIT_FACTORS = {
    "ms": ("s", 1e-3), "us": ("s", 1e-6), "ns": ("s", 1e-9), "min": ("s", 60.0), "h": ("s", 3600.0), "d": ("s", 86400.0),
    "kBy": ("By", 1e3), "MBy": ("By", 1e6), "GBy": ("By", 1e9), "KiBy": ("By", 1024.0), "MiBy": ("By", 1024.0**2),
    "GiBy": ("By", 1024.0**3), "%": ("1", 0.01),
}


class Names:
    def __init__(self, metrics: dict[str, str] | None = None, attributes: dict[str, str] | None = None) -> None:
        self.metrics = {**METRIC_NAMES, **(metrics or {})}
        self.attributes = {**ATTRIBUTE_NAMES, **(attributes or {})}

    def metric(self, name: str) -> str:
        return self.metrics.get(name, name)

    def keys(self, keys: tuple[str, ...], values: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Renamed keys; when an old and a new spelling are both present the new one wins."""
        if self.attributes.keys().isdisjoint(keys):
            return keys, values
        renamed: dict[str, str] = {}
        for key, value in zip(keys, values):
            new = self.attributes.get(key, key)
            if new != key and new in renamed:
                continue
            renamed[new] = value
        return tuple(renamed), tuple(renamed.values())


def _scale_list(column: pa.ChunkedArray | pa.Array, factors: np.ndarray) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array.values) == 0:
        return array
    parents = pc.list_parent_indices(array).to_numpy()
    values = array.values.to_numpy(zero_copy_only=False) * factors[parents]
    return pa.ListArray.from_arrays(array.offsets, pa.array(values, array.type.value_type))


def convert_units(table: pa.Table, flags_column: str = "quality_flags") -> pa.Table:
    """Rescale points whose unit has a known base unit; flag them `unit_converted`."""
    if table.num_rows == 0:
        return table
    known = list(UNIT_FACTORS)
    index = pc.fill_null(pc.index_in(table.column("unit"), value_set=pa.array(known)), -1).to_numpy()
    exponential = pc.equal(table.column("kind"), "exponential_histogram").to_numpy(zero_copy_only=False)
    changed = (index >= 0) & ~exponential
    if not changed.any():
        return table
    positions = np.maximum(index, 0)
    factors = np.where(changed, np.asarray([UNIT_FACTORS[u][1] for u in known])[positions], 1.0)
    base_units = np.asarray([UNIT_FACTORS[u][0] for u in known], object)[positions]
    new_units = np.where(changed, base_units, np.asarray(table.column("unit").to_pylist(), object)).tolist()
    factor = pa.array(factors)
    for name in ("value", "sum", "min", "max"):
        table = table.set_column(table.schema.get_field_index(name), name, pc.multiply(table.column(name), factor))
    for name in ("bucket_bounds", "quantile_values"):
        table = table.set_column(table.schema.get_field_index(name), name, _scale_list(table.column(name), factors))
    table = table.set_column(table.schema.get_field_index("unit"), "unit", pa.array(new_units, pa.string()))
    return add_flag(table, changed, "unit_converted", flags_column)


def add_flag(table: pa.Table, mask: np.ndarray, flag: str, column: str = "quality_flags") -> pa.Table:
    if not mask.any():
        return table
    current = table.column(column).to_pylist()
    updated = [flags + [flag] if hit else flags for flags, hit in zip(current, mask.tolist())]
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, pa.array(updated, table.schema.field(column).type))


class CumulativeToDelta:
    """Per-series state turning configured cumulative sums into deltas."""

    def __init__(self, patterns: list[str], max_series: int = 500_000) -> None:
        self.patterns = patterns
        self.max_series = max_series
        self.last: OrderedDict[int, tuple[float, int, int]] = OrderedDict()  # series -> (value, time, start)

    def wanted(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def apply(self, table: pa.Table) -> pa.Table:
        if not self.patterns or table.num_rows == 0:
            return table
        names = table.column("metric_name").to_pylist()
        kinds = table.column("kind").to_pylist()
        temporalities = table.column("temporality").to_pylist()
        rows = [i for i in range(table.num_rows)
                if kinds[i] == "sum" and temporalities[i] == "cumulative" and self.wanted(names[i])]
        if not rows:
            return table
        keep = np.ones(table.num_rows, bool)
        reset = np.zeros(table.num_rows, bool)
        values = table.column("value").to_numpy().copy()
        starts = pc.cast(table.column("start_time"), pa.int64()).to_numpy().copy()
        times = pc.cast(table.column("time"), pa.int64()).to_numpy()
        series = table.column("series_id").to_numpy()
        for i in sorted(rows, key=lambda r: times[r]):
            keep[i], reset[i], values[i], starts[i] = self._step(int(series[i]), values[i], int(times[i]), int(starts[i]))
        table = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values))
        table = table.set_column(table.schema.get_field_index("start_time"), "start_time",
                                 pa.array(starts, pa.int64()).cast(table.schema.field("start_time").type))
        temporality = ["delta" if i in set(rows) else t for i, t in enumerate(temporalities)]
        table = table.set_column(table.schema.get_field_index("temporality"), "temporality", pa.array(temporality, pa.string()))
        table = add_flag(table, reset, "counter_reset")
        return table.filter(pa.array(keep))

    def _step(self, series: int, value: float, time_ns: int, start_ns: int) -> tuple[bool, bool, float, int]:
        previous = self.last.get(series)
        self.last[series] = (value, time_ns, start_ns)
        self.last.move_to_end(series)
        if len(self.last) > self.max_series:
            self.last.popitem(last=False)
        if previous is None or math.isnan(value):
            return False, False, value, start_ns
        last_value, last_time, last_start = previous
        if time_ns <= last_time:
            return False, False, value, start_ns  # out of order or repeated: already counted
        restarted = value < last_value or (start_ns and last_start and start_ns != last_start)
        return True, bool(restarted), value if restarted else value - last_value, last_time


class ServiceCatalog:
    """Resource attributes by service name, from a YAML or JSON file re-read when it changes.

    File: `services: {<service.name>: {team: ..., tier: ..., environment: ...}}`.
    Keys become `service.owner.team`, `service.tier`, `deployment.environment.name`;
    any other key is added as `service.<key>`.
    """

    KEYS = {"team": "service.owner.team", "tier": "service.tier", "environment": "deployment.environment.name"}

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime = None
        self.services: dict[str, dict[str, str]] = {}

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        data = yaml.safe_load(self.path.read_text()) or {}
        self.services = {
            str(name): {self.KEYS.get(k, f"service.{k}"): str(v) for k, v in (fields or {}).items()}
            for name, fields in (data.get("services") or {}).items()
        }
        self._mtime = mtime

    def enrich(self, table: pa.Table) -> pa.Table:
        self._reload()
        if not self.services or table.num_rows == 0:
            return table
        services = table.column("service_name").to_pylist()
        if not any(s in self.services for s in services):
            return table
        resources = table.column("resource_attributes").to_pylist()
        enriched = [dict(r) | self.services.get(s, {}) if s in self.services else dict(r) for r, s in zip(resources, services)]
        index = table.schema.get_field_index("resource_attributes")
        column = pa.array([list(r.items()) for r in enriched], table.schema.field("resource_attributes").type)
        return table.set_column(index, "resource_attributes", column)
