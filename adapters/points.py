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

from adapters.base import AdaptResult, IngestContext, Outcome
from adapters.columns import apply_rejections, constant, flags_column, provenance_columns, time_array, times, window_masks
from adapters.otlp.attributes import service_name
from adapters.series import pairs_hash, series_ids, text_hash
from schema import POINTS, arrow_schema

SCHEMA = arrow_schema(POINTS)
NO_RECORDED_VALUE = 1
# Prometheus marks a series stale with this exact NaN; any other NaN is a value.
STALE_NAN_BITS = 0x7FF0000000000002


def is_stale_marker(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


def stale_marker() -> float:
    return struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


class _LabelSets:
    """Distinct label sets as (keys, values, hash), so each is hashed once."""

    def __init__(self) -> None:
        self.index: dict[tuple[tuple[str, str], ...], int] = {}
        self.keys: list[tuple[str, ...]] = []
        self.values: list[tuple[str, ...]] = []
        self.hashes: list[int] = []

    def id_of(self, labels: dict[str, str]) -> int:
        key = tuple(sorted(labels.items()))
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.keys)
            self.keys.append(tuple(k for k, _ in key))
            self.values.append(tuple(v for _, v in key))
            self.hashes.append(pairs_hash(self.keys[-1], self.values[-1]))
        return found

    def column(self, ids: list[int]) -> tuple[pa.MapArray, np.ndarray]:
        keys: list[str] = []
        values: list[str] = []
        offsets = [0]
        for i in range(len(self.keys)):
            keys.extend(self.keys[i])
            values.extend(self.values[i])
            offsets.append(len(keys))
        distinct = pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string()))
        index = np.asarray(ids, np.int64)
        return distinct.take(pa.array(index)), np.asarray(self.hashes, np.uint64)[index] if self.hashes else np.zeros(0, np.uint64)


class PointRows:
    """Append points one by one; `finish` turns them into a checked Arrow table."""

    TEXT = ("metric_name", "description", "unit", "kind", "temporality", "scope_name", "scope_version")

    def __init__(self) -> None:
        self.cols: dict[str, list] = {name: [] for name in (
            "time", "start_time", "value", "is_monotonic", "point_flags", "count", "sum", "min", "max",
            "bucket_bounds", "bucket_counts", "quantiles", "quantile_values", "exemplar_trace_ids", *self.TEXT,
        )}
        self.attrs: list[int] = []
        self.resources: list[int] = []
        self.labels = _LabelSets()
        self.flags_extra: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.attrs)

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
        self.attrs.append(self.labels.id_of(attributes))
        self.resources.append(self.labels.id_of(resource))

    def flag(self, row: int, name: str) -> None:
        """An extra quality flag for one row (e.g. `cardinality_overflow`)."""
        self.flags_extra.append((row, name))

    def finish(self, ctx: IngestContext, outcome: Outcome) -> AdaptResult:
        n = len(self)
        if n == 0:
            return AdaptResult(SCHEMA.empty_table(), outcome)
        event = times(self.cols["time"])
        keep = apply_rejections(n, window_masks(event, ctx.window, ctx.received_ns, "sample time"), outcome)
        value = np.asarray(self.cols["value"], np.float64)
        stale = np.asarray(self.cols["point_flags"], np.uint32) == NO_RECORDED_VALUE
        sums = np.asarray([s if s is not None else 0.0 for s in self.cols["sum"]], np.float64)
        numbers = np.isin(np.asarray(self.cols["kind"], object), ["gauge", "sum"])
        flags = {
            "no_recorded_value": stale,
            "non_finite": ~stale & ((numbers & ~np.isfinite(value)) | (~numbers & ~np.isfinite(sums))),
        }
        for row, name in self.flags_extra:
            flags.setdefault(name, np.zeros(n, bool))[row] = True
        attributes, attr_hashes = self.labels.column(self.attrs)
        resources, resource_hashes = self.labels.column(self.resources)
        names = np.fromiter((text_hash(x) for x in self.cols["metric_name"]), np.uint64, n)
        services = [service_name(self.labels.keys[r], self.labels.values[r]) for r in self.resources]
        cols = {
            "time": time_array(event),
            "start_time": time_array(times(self.cols["start_time"])),
            "attributes": attributes,
            "resource_attributes": resources,
            "service_name": pa.array(services, pa.string()),
            "series_id": pa.array(series_ids(ctx.tenant, names, resource_hashes, attr_hashes)),
            "quality_flags": flags_column(n, flags),
            **provenance_columns(ctx, n),
        }
        arrays = []
        for field in SCHEMA:
            if field.name in cols:
                arrays.append(cols[field.name])
            elif field.name in self.cols:
                arrays.append(pa.array(self.cols[field.name], field.type))
            else:
                arrays.append(_zeros(field, n))
        table = pa.Table.from_arrays(arrays, schema=SCHEMA)
        for name, mask in flags.items():
            outcome.warn(name, int((mask & keep).sum()))
        return AdaptResult(table if keep.all() else table.filter(pa.array(keep)), outcome)


def _zeros(field: pa.Field, n: int) -> pa.Array:
    if pa.types.is_list(field.type):
        return pa.repeat(pa.scalar([], field.type), n)
    if field.nullable:
        return pa.nulls(n, field.type)
    return constant(0, field.type, n)
