"""A row builder for `log_records` shared by the text log adapters (syslog, JSON lines),
and the OpenTelemetry severity scale they map to."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import Draft
from telemetry_gateway.adapters.columns import time_array, times
from telemetry_gateway.adapters.attributes import service_name
from telemetry_gateway.schema import LOGS

# Level words senders use, to OpenTelemetry severity numbers (1-4 TRACE, 5-8 DEBUG, 9-12 INFO,
# 13-16 WARN, 17-20 ERROR, 21-24 FATAL); syslog's keywords included.
SEVERITY_NUMBERS = {
    "trace": 1, "debug": 5, "info": 9, "information": 9, "informational": 9, "notice": 10, "warn": 13,
    "warning": 13, "error": 17, "err": 17, "critical": 18, "crit": 18, "alert": 19, "fatal": 21, "emerg": 21,
    "emergency": 21, "panic": 21,
}
SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def severity_name(number: int | None, text: str | None = "") -> str:
    """The OpenTelemetry short name of a severity (INFO, WARN, ...): from the number when it is set,
    else from the text; UNSPECIFIED when neither says."""
    if not 1 <= (number or 0) <= 24:
        number = SEVERITY_NUMBERS.get((text or "").strip().lower(), 0)
    return SEVERITY_NAMES[(number - 1) // 4] if number else "UNSPECIFIED"


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

    def finish(self, received_ns: int) -> Draft:
        """A record without a time takes the time it was received, and says so in a flag."""
        event = times(self.cols["time"])
        missing = event == 0
        columns = {
            "observed_time": time_array(times(self.cols["observed_time"])),
            "severity_number": pa.array(self.cols["severity_number"], pa.uint8()),
            "severity_text": pa.array(self.cols["severity_text"], pa.string()),
            "body": pa.array(self.cols["body"], pa.string()),
            "scope_name": pa.array(self.cols["scope_name"], pa.string()),
            "attributes": _map(self.attributes),
            "resource_attributes": _map(self.resources),
            "service_name": pa.array([service_name(tuple(r), tuple(r.values())) for r in self.resources], pa.string()),
        }
        return Draft(LOGS, columns, np.where(missing, np.uint64(received_ns), event), "log time",
                     flags={"time_from_received": missing})
