"""Column helpers shared by adapters: everything here works on whole columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.attributes import AttributeSets, service_name

TIME_TYPE = pa.timestamp("ns", tz="UTC")


def constant(value, type_: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), n)


MAX_TIME_NS = 2**64 - 1


def times(raw: list[int] | np.ndarray) -> np.ndarray:
    """Times as uint64 nanoseconds. Hostile input may hold times before 1970 or past
    uint64: those become 1 ns and the largest value, which the accept window refuses."""
    try:
        return np.asarray(raw, dtype=np.uint64)
    except (OverflowError, ValueError, TypeError):
        return np.fromiter((1 if t < 0 else min(int(t), MAX_TIME_NS) for t in raw), np.uint64, len(raw))


def time_array(values: np.ndarray) -> pa.Array:
    # Out-of-range times are already masked out; clamp so the cast cannot overflow.
    return pa.array(np.minimum(values, np.uint64(2**63 - 1)).astype(np.int64), TIME_TYPE)


def apply_rejections(n: int, rejects: list[tuple[str, str, np.ndarray]], outcome) -> np.ndarray:
    """Count each row once, for the first reason that applies; return the keep mask."""
    rejected = np.zeros(n, dtype=bool)
    for code, reason, mask in rejects:
        fresh = mask & ~rejected
        outcome.reject(code, reason, int(fresh.sum()))
        rejected |= fresh
    return ~rejected


def index_masks(n: int, reasons: dict[int, tuple[str, str]]) -> list[tuple[str, str, np.ndarray]]:
    """Masks from a sparse {row: (code, reason)} map, one mask per distinct reason."""
    masks: dict[tuple[str, str], np.ndarray] = {}
    for row, why in reasons.items():
        masks.setdefault(why, np.zeros(n, bool))[row] = True
    return [(code, reason, mask) for (code, reason), mask in masks.items()]


def flags_column(n: int, flags: dict[str, np.ndarray]) -> pa.ListArray:
    """List<string> column with each row's flag names, built without a row loop."""
    names = list(flags)
    if not names:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()))
    matrix = np.stack([flags[name] for name in names], axis=1)  # rows x flags
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    _, flag_idx = np.nonzero(matrix)
    values = pa.array(np.asarray(names, dtype=object)[flag_idx].tolist() if len(flag_idx) else [], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


class Origins:
    """Distinct (resource, scope) pairs; rows point at one by index."""

    def __init__(self, sets: AttributeSets) -> None:
        self.sets = sets
        self.resource: list[int] = []
        self.service: list[str] = []
        self.scope_name: list[str] = []
        self.scope_version: list[str] = []

    def add(self, resource_set: int, scope_name: str, scope_version: str) -> int:
        self.resource.append(resource_set)
        self.service.append(service_name(self.sets.keys[resource_set], self.sets.values[resource_set]))
        self.scope_name.append(scope_name)
        self.scope_version.append(scope_version)
        return len(self.resource) - 1

    def columns(self, index: np.ndarray) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Per-row origin columns, and per-row resource attribute hashes."""
        resources, hashes = self.sets.map_column(np.asarray(self.resource, np.int64)[index])
        take = pa.array(index)
        columns = {
            "service_name": pa.array(self.service, pa.string()).take(take),
            "resource_attributes": resources,
            "scope_name": pa.array(self.scope_name, pa.string()).take(take),
            "scope_version": pa.array(self.scope_version, pa.string()).take(take),
        }
        return columns, hashes
