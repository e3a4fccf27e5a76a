"""A row builder for the `spans` table, shared by the OTLP and Zipkin span adapters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import AdaptResult, IngestContext, Outcome
from telemetry_gateway.adapters.columns import apply_rejections, flags_column, provenance_columns, time_array, times, window_masks
from telemetry_gateway.adapters.otlp.attributes import AttributeSets, service_name
from telemetry_gateway.schema import SPANS, arrow_schema

SPANS_SCHEMA = arrow_schema(SPANS)
TEXT = ("trace_id", "span_id", "parent_span_id", "name", "kind", "status_code", "status_message", "scope_name", "scope_version")


class SpanRows:
    def __init__(self, sets: AttributeSets) -> None:
        self.sets = sets
        self.start: list[int] = []
        self.end: list[int] = []
        self.text: dict[str, list[str]] = {name: [] for name in TEXT}
        self.attr_ids: list[int] = []
        self.resource_ids: list[int] = []

    def add(self, start_ns: int, end_ns: int, text: tuple[str, ...], attributes_id: int, resource_id: int) -> None:
        """`text` holds the TEXT columns in order."""
        self.start.append(start_ns)
        self.end.append(end_ns)
        for name, value in zip(TEXT, text):
            self.text[name].append(value)
        self.attr_ids.append(attributes_id)
        self.resource_ids.append(resource_id)

    def finish(self, ctx: IngestContext, outcome: Outcome) -> AdaptResult:
        n = len(self.start)
        if n == 0:
            return AdaptResult(SPANS_SCHEMA.empty_table(), outcome)
        start, end = times(self.start), times(self.end)
        keep = apply_rejections(n, window_masks(start, ctx.window, ctx.received_ns, "span start"), outcome)
        attributes, _ = self.sets.map_column(self.attr_ids)
        resources, _ = self.sets.map_column(self.resource_ids)
        services = {r: service_name(self.sets.keys[r], self.sets.values[r]) for r in set(self.resource_ids)}
        arrays = {
            "time": time_array(start), "end_time": time_array(end),
            "duration_ns": pa.array(np.where(end > start, end - start, 0).astype(np.uint64)),
            "attributes": attributes, "resource_attributes": resources,
            "service_name": pa.array([services[r] for r in self.resource_ids], pa.string()),
            "quality_flags": flags_column(n, {}), **provenance_columns(ctx, n),
            **{name: pa.array(values, pa.string()) for name, values in self.text.items()},
        }
        table = pa.Table.from_arrays([arrays[f.name] for f in SPANS_SCHEMA], schema=SPANS_SCHEMA)
        return AdaptResult(table if keep.all() else table.filter(pa.array(keep)), outcome)
