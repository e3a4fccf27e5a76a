"""JSON lines (one JSON object per line) to rows of `log_records`.

Recognised keys, first match wins: time from `timestamp`, `time`, `ts`, `@timestamp`
(RFC 3339 text, or epoch seconds, milliseconds or nanoseconds by magnitude);
body from `message`, `msg`, `body`, `log`; severity from `level`, `severity`,
`lvl`; service from `service`, `service.name`, `app`. Every other key is an
attribute (nested values as JSON text). A line that is not a JSON object is
refused by itself.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Outcome
from telemetry_gateway.adapters.logrows import SEVERITY_NUMBERS, LogRows
from telemetry_gateway.adapters.attributes import AttributeLimits, InvalidAttributes

TIME_KEYS = ("timestamp", "time", "ts", "@timestamp")
BODY_KEYS = ("message", "msg", "body", "log")
LEVEL_KEYS = ("level", "severity", "lvl")
SERVICE_KEYS = ("service", "service.name", "app")


def _pop(record: dict, keys: tuple[str, ...]):
    for key in keys:
        if key in record:
            return record.pop(key)
    return None


def parse_time(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError("time is a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"time {value!r} is not a time after 1970")
        magnitude = abs(value)
        scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1 if magnitude > 1e17 else 1e3
        return int(value * scale)
    stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def jsonlines_to_arrow(body: bytes, ctx: AdaptContext, limits: AttributeLimits = AttributeLimits()) -> AdaptResult:
    outcome = Outcome()
    rows = LogRows()
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            outcome.reject("malformed", "line is not valid JSON")
            continue
        if not isinstance(record, dict):
            outcome.reject("malformed", "line is not a JSON object")
            continue
        try:
            time_ns = parse_time(_pop(record, TIME_KEYS))
        except (ValueError, OverflowError, OSError):
            outcome.reject("invalid_time", "time is not a number of (milli/micro/nano)seconds or an ISO 8601 time with a zone")
            continue
        level = str(_pop(record, LEVEL_KEYS) or "")
        service = _pop(record, SERVICE_KEYS)
        body_value = _pop(record, BODY_KEYS)
        attributes = {k: _text(v) for k, v in record.items()}
        try:
            limits.check(tuple(attributes), tuple(attributes.values()))
        except InvalidAttributes as exc:
            outcome.reject("invalid_attributes", str(exc))
            continue
        rows.add(time_ns=time_ns, observed_ns=ctx.received_ns, severity=SEVERITY_NUMBERS.get(level.lower(), 0),
                 severity_text=level, body="" if body_value is None else _text(body_value),
                 attributes=attributes,
                 resource={"service.name": _text(service)} if service else {}, scope="jsonlines")
    return AdaptResult([rows.finish(ctx.received_ns)], outcome)
