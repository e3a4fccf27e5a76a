"""Unit spellings mapped to UCUM case-sensitive codes, as OpenTelemetry uses them.

Only the spelling is normalized here; values are not rescaled.
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    "": "",
    "1": "1",
    "seconds": "s", "second": "s", "sec": "s", "secs": "s",
    "milliseconds": "ms", "millisecond": "ms", "msec": "ms",
    "microseconds": "us", "microsecond": "us", "μs": "us", "µs": "us",
    "nanoseconds": "ns", "nanosecond": "ns",
    "minutes": "min", "minute": "min", "hours": "h", "hour": "h", "days": "d", "day": "d",
    "bytes": "By", "byte": "By",
    "kilobytes": "kBy", "kib": "KiBy",
    "megabytes": "MBy", "mib": "MiBy",
    "gigabytes": "GBy", "gib": "GiBy",
    "bits": "bit",
    "percent": "%", "pct": "%",
    "ratio": "1",
    "hertz": "Hz",
}


def normalize_unit(unit: str) -> str:
    stripped = unit.strip()
    return ALIASES.get(stripped, ALIASES.get(stripped.lower(), stripped))
