"""A row builder for the `spans` table, shared by the OTLP and Zipkin span adapters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import Draft
from telemetry_gateway.adapters.columns import time_array, times
from telemetry_gateway.adapters.attributes import AttributeSets, service_name
from telemetry_gateway.schema import SPANS
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

    def finish(self) -> Draft:
        start, end = times(self.start), times(self.end)
        attributes, _ = self.sets.map_column(self.attr_ids)
        resources, _ = self.sets.map_column(self.resource_ids)
        services = {r: service_name(self.sets.keys[r], self.sets.values[r]) for r in set(self.resource_ids)}
        columns = {
            "end_time": time_array(end),
            "duration_ns": pa.array(np.where(end > start, end - start, 0).astype(np.uint64)),
            "attributes": attributes, "resource_attributes": resources,
            "service_name": pa.array([services[r] for r in self.resource_ids], pa.string()),
            **{name: pa.array(values, pa.string()) for name, values in self.text.items()},
        }
        return Draft(SPANS, columns, start, "span start")
