"""A row builder for `log_records` shared by the text log adapters (syslog, JSON lines)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import AdaptResult, IngestContext, Outcome
from telemetry_gateway.adapters.columns import apply_rejections, flags_column, provenance_columns, time_array, times, window_masks
from telemetry_gateway.adapters.otlp.attributes import service_name
from telemetry_gateway.schema import LOGS, arrow_schema

SCHEMA = arrow_schema(LOGS)


def _map(dicts: list[dict[str, str]]) -> pa.MapArray:
    offsets, keys, values = [0], [], []
    for d in dicts:
        keys.extend(d)
        values.extend(d.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string()))


class LogRows:
    def __init__(self) -> None:
        self.cols: dict[str, list] = {n: [] for n in (
            "time", "observed_time", "severity_number", "severity_text", "body", "scope_name")}
        self.attributes: list[dict[str, str]] = []
        self.resources: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.attributes)

    def add(self, *, time_ns: int, observed_ns: int, severity: int, severity_text: str, body: str,
            attributes: dict[str, str], resource: dict[str, str], scope: str = "") -> None:
        for name, value in zip(self.cols, (time_ns, observed_ns, severity, severity_text, body, scope)):
            self.cols[name].append(value)
        self.attributes.append(attributes)
        self.resources.append(resource)

    def finish(self, ctx: IngestContext, outcome: Outcome) -> AdaptResult:
        n = len(self)
        if n == 0:
            return AdaptResult(SCHEMA.empty_table(), outcome)
        event = times(self.cols["time"])
        missing = event == 0
        effective = np.where(missing, np.uint64(ctx.received_ns), event)
        keep = apply_rejections(n, window_masks(effective, ctx.window, ctx.received_ns, "log time"), outcome)
        flags = {"time_from_received": missing}
        cols = {
            "time": time_array(effective),
            "observed_time": time_array(times(self.cols["observed_time"])),
            "severity_number": pa.array(self.cols["severity_number"], pa.uint8()),
            "severity_text": pa.array(self.cols["severity_text"], pa.string()),
            "body": pa.array(self.cols["body"], pa.string()),
            "scope_name": pa.array(self.cols["scope_name"], pa.string()),
            "attributes": _map(self.attributes),
            "resource_attributes": _map(self.resources),
            "service_name": pa.array([service_name(tuple(r), tuple(r.values())) for r in self.resources], pa.string()),
            "quality_flags": flags_column(n, flags),
            **provenance_columns(ctx, n),
        }
        arrays = []
        for field in SCHEMA:
            if field.name in cols:
                arrays.append(cols[field.name])
            elif pa.types.is_string(field.type):
                arrays.append(pa.array([""] * n, pa.string()))
            else:
                arrays.append(pa.array(np.zeros(n, field.type.to_pandas_dtype()), field.type))
        table = pa.Table.from_arrays(arrays, schema=SCHEMA)
        outcome.warn("time_from_received", int((missing & keep).sum()))
        return AdaptResult(table if keep.all() else table.filter(pa.array(keep)), outcome)
