"""A row builder for `metric_points` shared by adapters whose input is already text.

The OTLP adapter has its own tuned walk; adapters that produce points one at a
time from parsed text (Prometheus remote write and exposition, probes, log
rules) append here and get the same checks, flags and series ids.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.attributes import AttributeSets, service_name
from telemetry_gateway.adapters.base import Draft, SeriesParts
from telemetry_gateway.adapters.columns import time_array, times
from telemetry_gateway.adapters.series import text_hash
from telemetry_gateway.schema import POINTS, arrow_schema

SCHEMA = arrow_schema(POINTS)
NO_RECORDED_VALUE = 1
# Prometheus marks a series stale with this exact NaN; any other NaN is a value.
STALE_NAN_BITS = 0x7FF0000000000002


def is_stale_marker(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def stale_marker() -> float:
    return struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


class SeriesTable:
    """Registered series' fields (`PointRows.series_info_of`), also kept as columns, so that the points
    of known series become columns by taking rows, without a Python step per series. A cache that
    outlives requests (remote write's walk cache) keeps one; a request's own starts empty."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self._text: list[pa.Array] = [pa.array([], pa.string()) for _ in PointRows.TEXT]
        self._numbers = np.zeros((0, 4), np.uint64)  # is_monotonic, attributes id, resource id, name hash
        self._names: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, info: tuple) -> int:
        self.entries.append(info)
        return len(self.entries) - 1

    def columns(self, index: np.ndarray) -> tuple[list[pa.Array], np.ndarray]:
        """(the TEXT columns, the numbers as rows) of the entries at `index`."""
        compacted = len(self._numbers)
        pending = len(self.entries) - compacted
        if pending and pending >= max(1024, compacted // 2):
            self._compact(compacted)
            compacted = len(self._numbers)
        if not len(index) or index.max() < compacted:
            at = pa.array(index)
            return [column.take(at) for column in self._text], self._numbers[index]
        unique, inverse = np.unique(index, return_inverse=True)
        old, new = unique[unique < compacted], unique[unique >= compacted].tolist()
        text, numbers = self._build(new)
        at, inverse = pa.array(old), pa.array(inverse.ravel())
        text = [pa.concat_arrays([column.take(at), fresh]).take(inverse) for column, fresh in zip(self._text, text)]
        return text, np.concatenate([self._numbers[old], numbers])[inverse.to_numpy()]

    def _compact(self, compacted: int) -> None:
        text, numbers = self._build(range(compacted, len(self.entries)))
        self._text = [pa.concat_arrays([old, fresh]) for old, fresh in zip(self._text, text)]
        self._numbers = np.concatenate([self._numbers, numbers])

    def _build(self, positions) -> tuple[list[pa.Array], np.ndarray]:
        fields = list(zip(*map(self.entries.__getitem__, positions))) or [()] * 10
        text = [pa.array(fields[i], pa.string()) for i in range(len(PointRows.TEXT))]
        names = self._names
        for name in set(fields[0]).difference(names):
            names[name] = text_hash(name)
        numbers = np.empty((len(fields[0]), 4), np.uint64)
        numbers[:, 0] = np.asarray(fields[7], bool)
        numbers[:, 1] = np.asarray(fields[8], np.int64)
        numbers[:, 2] = np.asarray(fields[9], np.int64)
        numbers[:, 3] = np.fromiter(map(names.__getitem__, fields[0]), np.uint64, len(fields[0]))
        return text, numbers


class PointRows:
    """Append points one by one; `finish` turns them into a checked Arrow table."""

    TEXT = ("metric_name", "description", "unit", "kind", "temporality", "scope_name", "scope_version")

    def __init__(self, sets: AttributeSets) -> None:
        # The tenant's registry: a series' labels are sorted and hashed once, not once per batch.
        self.labels = sets
        self.labels.begin()
        # Points of known series, appended cheaply (value, time) and expanded in finish(). A caller
        # with series registered across requests may swap in its own table before adding points.
        self.series = SeriesTable()
        self.light: dict[str, list] = {"series": [], "time": [], "value": [], "stale": []}
        self.cols: dict[str, list] = {name: [] for name in (
            "time", "start_time", "value", "is_monotonic", "point_flags", "count", "sum", "min", "max",
            "bucket_bounds", "bucket_counts", "quantiles", "quantile_values", "exemplar_trace_ids", *self.TEXT,
        )}
        self.attrs: list[int] = []
        self.resources: list[int] = []
        self.flags_extra: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.attrs) + len(self.light["series"])

    @staticmethod
    def series_info_of(*, name: str, kind: str, attributes_id: int, resource_id: int,
                       temporality: str = "unspecified", monotonic: bool = False, unit: str = "",
                       description: str = "", scope: tuple[str, str] = ("", "")) -> tuple:
        """What `add_series` takes: a series' fields, which callers may cache while the set ids hold."""
        return (name, description, unit, kind, temporality, *scope, monotonic, attributes_id, resource_id)

    def add_series(self, info: tuple) -> int:
        """Register a series for `value()`, its label sets already in `self.labels`; returns its handle."""
        return self.series.append(info)

    def value(self, series: int, time_ns: int, value: float, stale: bool = False) -> None:
        """A gauge or sum point of a registered series: the hot path of text sources."""
        light = self.light
        light["series"].append(series)
        light["time"].append(time_ns)
        light["value"].append(value)
        light["stale"].append(stale)

    def values(self, series: np.ndarray, time_ns: np.ndarray, value: np.ndarray, stale: np.ndarray) -> None:
        """Many points of registered series at once, as `value()` appends them one by one."""
        light = self.light
        light["series"].extend(series.tolist())
        light["time"].extend(time_ns.tolist())
        light["value"].extend(value.tolist())
        light["stale"].extend(stale.tolist())

    def _materialize(self) -> None:
        """Expand series points into the row columns with whole-column operations."""
        light = self.light
        k = len(light["series"])
        if not k:
            return
        index = np.asarray(light["series"], np.int64)
        info = list(zip(*self.series.entries))
        c = self.cols
        for position, column in enumerate(self.TEXT):
            c[column].extend(np.asarray(info[position], object)[index].tolist())
        c["is_monotonic"].extend(np.asarray(info[7], bool)[index].tolist())
        self.attrs.extend(np.asarray(info[8], np.int64)[index].tolist())
        self.resources.extend(np.asarray(info[9], np.int64)[index].tolist())
        c["time"].extend(light["time"])
        c["value"].extend(light["value"])
        c["point_flags"].extend(NO_RECORDED_VALUE if st else 0 for st in light["stale"])
        c["start_time"].extend([0] * k)
        c["count"].extend([0] * k)
        for column in ("sum", "min", "max"):
            c[column].extend([None] * k)
        for column in ("bucket_bounds", "bucket_counts", "quantiles", "quantile_values", "exemplar_trace_ids"):
            c[column].extend([[]] * k)
        self.light = {"series": [], "time": [], "value": [], "stale": []}

    def add(self, *, time_ns: int, name: str, kind: str, attributes: dict[str, str], resource: dict[str, str],
            value: float = math.nan, start_ns: int = 0, temporality: str = "unspecified", monotonic: bool = False,
            unit: str = "", description: str = "", count: int = 0, sum_: float | None = None,
            bounds: list[float] | None = None, bucket_counts: list[int] | None = None,
            quantiles: list[float] | None = None, quantile_values: list[float] | None = None,
            min_: float | None = None, max_: float | None = None, exemplars: list[str] | None = None,
            stale: bool = False, scope: tuple[str, str] = ("", "")) -> None:
        c = self.cols
        c["time"].append(time_ns)
        c["start_time"].append(start_ns)
        c["value"].append(value)
        c["is_monotonic"].append(monotonic)
        c["point_flags"].append(NO_RECORDED_VALUE if stale else 0)
        c["count"].append(count)
        c["sum"].append(sum_)
        c["min"].append(min_)
        c["max"].append(max_)
        c["exemplar_trace_ids"].append(exemplars or [])
        c["bucket_bounds"].append(bounds or [])
        c["bucket_counts"].append(bucket_counts or [])
        c["quantiles"].append(quantiles or [])
        c["quantile_values"].append(quantile_values or [])
        for name_, text in zip(self.TEXT, (name, description, unit, kind, temporality, *scope)):
            c[name_].append(text)
        self.attrs.append(self.labels.id_of_labels(attributes))
        self.resources.append(self.labels.id_of_labels(resource))

    def flag(self, row: int, name: str) -> None:
        """An extra quality flag for one row (e.g. `cardinality_overflow`)."""
        self.flags_extra.append((row, name))

    def finish(self) -> Draft:
        """The rows as a draft; the finalize stage checks times and adds the shared flags."""
        if self.cols["time"] or not self.light["series"]:
            self._materialize()
            parts = self._columns()
        else:  # only points of registered series (remote write, scrapes): whole-column operations
            parts = self._light_columns()
        columns, time_ns, name_hashes, attrs, resources = parts
        n = len(time_ns)
        flags: dict[str, np.ndarray] = {}
        for row, name in self.flags_extra:
            flags.setdefault(name, np.zeros(n, bool))[row] = True
        columns["attributes"], attr_hashes = self.labels.map_column(attrs)
        columns["resource_attributes"], resource_hashes = self.labels.map_column(resources)
        distinct, inverse = np.unique(np.asarray(resources, np.int64), return_inverse=True)
        services = [service_name(self.labels.keys[r], self.labels.values[r]) for r in distinct.tolist()]
        columns["service_name"] = pa.array(services, pa.string()).take(pa.array(inverse.ravel()))
        return Draft(POINTS, columns, time_ns, "sample time", flags=flags,
                     series=SeriesParts(name_hashes, resource_hashes, attr_hashes))

    def _columns(self) -> tuple:
        c = self.cols
        distinct = {name: text_hash(name) for name in set(c["metric_name"])}
        names = np.fromiter((distinct[x] for x in c["metric_name"]), np.uint64, len(c["metric_name"]))
        columns = {"start_time": time_array(times(c["start_time"]))}
        for name, values in c.items():
            if name not in ("time", "start_time"):
                columns[name] = pa.array(values, SCHEMA.field(name).type)
        return columns, times(c["time"]), names, self.attrs, self.resources

    def _light_columns(self) -> tuple:
        """`_columns` of `light` points without a Python object per point or series: each point
        takes its series' fields from the series table's columns."""
        light = self.light
        text, numbers = self.series.columns(np.asarray(light["series"], np.int64))
        k = len(numbers)
        columns = {"start_time": time_array(np.zeros(k, np.uint64))}
        columns.update(zip(self.TEXT, text))
        columns["is_monotonic"] = pa.array(numbers[:, 0].astype(bool))
        columns["value"] = pa.array(np.asarray(light["value"], np.float64))
        stale = np.asarray(light["stale"], bool)
        columns["point_flags"] = pa.array(np.where(stale, NO_RECORDED_VALUE, 0).astype(np.uint32))
        columns["count"] = pa.array(np.zeros(k, np.uint64))
        for name in ("sum", "min", "max"):
            columns[name] = pa.nulls(k, SCHEMA.field(name).type)
        empty = pa.array(np.zeros(k + 1, np.int32))
        for name in ("bucket_bounds", "bucket_counts", "quantiles", "quantile_values", "exemplar_trace_ids"):
            kind = SCHEMA.field(name).type
            columns[name] = pa.ListArray.from_arrays(empty, pa.array([], kind.value_type), type=kind)
        names = numbers[:, 3].copy()
        attrs = numbers[:, 1].astype(np.int64)
        resources = numbers[:, 2].astype(np.int64)
        time_ns = times(light["time"])
        self.light = {"series": [], "time": [], "value": [], "stale": []}
        return columns, time_ns, names, attrs, resources
