"""OTLP logs to rows of `log_records`.

A record without time_unix_nano takes its observed time (flag
`time_from_observed`), or the gateway's receive time when it has neither
(flag `time_from_received`): OTLP allows both to be absent, and a log line is
still worth keeping. Refused: effective times outside the accept window, text
that is not valid UTF-8, trace or span ids of the wrong length.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Draft, Outcome
from telemetry_gateway.adapters.columns import Origins, index_masks, time_array, times
from telemetry_gateway.adapters.otlp import wire
from telemetry_gateway.adapters.attributes import AttributeSets, InvalidAttributes, any_value_text
from telemetry_gateway.schema import LOGS

decode_request = wire.LogsRequest.FromString


class _Records:
    TEXT = ("severity_text", "body", "event_name", "trace_id", "span_id")

    def __init__(self, sets: AttributeSets) -> None:
        self.sets = sets
        self.time: list[int] = []
        self.observed: list[int] = []
        self.severity: list[int] = []
        self.flags: list[int] = []
        self.text: dict[str, list[str]] = {name: [] for name in self.TEXT}
        self.attr_ids: list[int] = []
        self.origin: list[int] = []
        self.bad: dict[int, tuple[str, str]] = {}  # row -> (code, reason)

    def __len__(self) -> int:
        return len(self.time)

    def add(self, record, origin: int) -> None:
        row = len(self.time)
        self.time.append(record.time_unix_nano)
        self.observed.append(record.observed_time_unix_nano)
        self.severity.append(record.severity_number)
        self.flags.append(record.flags)
        self.origin.append(origin)
        try:
            fields = _record_text(record)
            set_id = self.sets.id_of(tuple(record.attributes))
        except (InvalidAttributes, ValueError) as exc:
            self.bad[row] = (_code(exc), str(exc))
            fields, set_id = ("",) * len(self.TEXT), 0
        for name, value in zip(self.TEXT, fields):
            self.text[name].append(value)
        self.attr_ids.append(set_id)


def _hex_id(raw: bytes, size: int, name: str) -> str:
    if raw and len(raw) != size:
        raise ValueError(f"{name} is {len(raw)} bytes, not {size}")
    return raw.hex()


def _record_text(record) -> tuple[str, ...]:
    try:
        severity, event = record.severity_text.decode("utf-8"), record.event_name.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("severity_text or event_name is not valid UTF-8") from None
    body = any_value_text(record.body) if record.HasField("body") else ""
    return (
        severity,
        body,
        event,
        _hex_id(record.trace_id, 16, "trace_id"),
        _hex_id(record.span_id, 8, "span_id"),
    )


def _effective_time(event: np.ndarray, observed: np.ndarray, received_ns: int):
    from_observed = (event == 0) & (observed != 0)
    from_received = (event == 0) & (observed == 0)
    effective = np.where(from_observed, observed, event)
    effective = np.where(from_received, np.uint64(received_ns), effective)
    return effective, {"time_from_observed": from_observed, "time_from_received": from_received}


def _code(exc: ValueError) -> str:
    if isinstance(exc, InvalidAttributes):
        return "invalid_attributes"
    return "invalid_utf8" if isinstance(exc, UnicodeDecodeError) else "invalid_value"


def _draft(records: _Records, origins: Origins, received_ns: int) -> Draft:
    n = len(records)
    effective, flags = _effective_time(times(records.time), times(records.observed), received_ns)
    severity = np.asarray(records.severity, np.int64)
    rejects = index_masks(n, records.bad)
    rejects.append(("invalid_value", "severity_number is outside 0..24", (severity < 0) | (severity > 24)))
    attributes, _ = records.sets.map_column(records.attr_ids)
    origin_cols, _ = origins.columns(np.asarray(records.origin, np.int32))
    columns: dict[str, pa.Array] = {
        "observed_time": time_array(times(records.observed)),
        # Out-of-range severities are refused; clip so the column can be built before filtering.
        "severity_number": pa.array(np.clip(severity, 0, 24).astype(np.uint8)),
        "record_flags": pa.array(records.flags, pa.uint32()),
        "attributes": attributes,
        **{name: pa.array(values, pa.string()) for name, values in records.text.items()},
        **origin_cols,
    }
    return Draft(LOGS, columns, effective, "log time", rejects, flags)


def logs_to_arrow(request, ctx: AdaptContext, sets: AttributeSets) -> AdaptResult:
    """Map a (lenient) ExportLogsServiceRequest to one `log_records` draft."""
    sets.begin()
    outcome = Outcome()
    origins, records = Origins(sets), _Records(sets)
    for rl in request.resource_logs:
        try:
            resource = sets.id_of(tuple(rl.resource.attributes))
        except InvalidAttributes as exc:
            outcome.reject("invalid_attributes", f"resource attributes: {exc}", sum(len(sl.log_records) for sl in rl.scope_logs))
            continue
        for sl in rl.scope_logs:
            try:
                scope = (sl.scope.name.decode("utf-8"), sl.scope.version.decode("utf-8"))
            except UnicodeDecodeError:
                outcome.reject("invalid_utf8", "scope name or version is not valid UTF-8", len(sl.log_records))
                continue
            origin = origins.add(resource, *scope)
            for record in sl.log_records:
                records.add(record, origin)
    return AdaptResult([_draft(records, origins, ctx.received_ns)] if len(records) else [], outcome)
