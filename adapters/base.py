"""What every adapter takes and returns.

An adapter is a pure function from a decoded request to `Draft`s: the
content columns of one schema table, plus what only the adapter can know
(which rows its format refuses, which it flags, the parts of each row's series
identity). The finalize stage (`gateway.finalize`) does everything that is the
same for every format: the accept window, the shared quality flags, series ids,
provenance and default columns. An adapter knows nothing of sockets, stores,
tenants or regions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from telemetry_gateway.schema import Table

NS_PER_S = 1_000_000_000

# Why an item was refused, as a bounded label for /metrics and `ingest_log`.
# The free-text reason beside it goes to the client and may name values.
REASON_CODES = frozenset({
    "malformed",            # the request or line could not be parsed at all
    "adapter_error",        # a bug: nothing of the request was kept
    "invalid_utf8",         # text that is not UTF-8
    "invalid_attributes",   # too many, too long or undecodable attributes
    "invalid_name",         # empty metric name
    "invalid_value",        # no value, a negative counter, a bad severity
    "invalid_histogram",    # buckets, bounds, counts or quantiles that do not add up
    "invalid_span",         # bad ids, times or fields of a span
    "invalid_time",         # a time that cannot be read
    "time_missing",         # the event time is 0
    "too_old",              # older than the accept window
    "too_far_ahead",        # further in the future than the accept window allows
    "residency",            # no region may lawfully keep the row (policy residency rules)
    "series_limit",         # a new series past the tenant's max_series
    "duplicate",            # the same series and timestamp twice in one request
    "unsupported",          # a valid input the gateway does not store yet
})


@dataclass(frozen=True)
class AcceptWindow:
    """Event times outside [received - max_age, received + max_future] are refused."""

    max_age_ns: int = 14 * 86400 * NS_PER_S
    max_future_ns: int = 3600 * NS_PER_S


@dataclass(frozen=True)
class AdaptContext:
    """What an adapter may know of the request besides its content."""

    received_ns: int
    window: AcceptWindow = AcceptWindow()


@dataclass
class Outcome:
    """Counts of refused items (by code and reason) and of kept-but-flagged items (by flag)."""

    rejected: Counter = field(default_factory=Counter)  # (code, reason) -> n
    warned: Counter = field(default_factory=Counter)

    def reject(self, code: str, reason: str, n: int = 1) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown reason code {code!r}")
        if n:
            self.rejected[(code, reason)] += n

    def warn(self, reason: str, n: int = 1) -> None:
        if n:
            self.warned[reason] += n

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def reasons(self) -> Counter:
        counts: Counter = Counter()
        for (_, reason), n in self.rejected.items():
            counts[reason] += n
        return counts

    def by_code(self) -> Counter:
        counts: Counter = Counter()
        for (code, _), n in self.rejected.items():
            counts[code] += n
        return counts

    def message(self, noun: str) -> str:
        """One English sentence for OTLP partial_success.error_message."""
        parts = [f"{n} {noun} rejected: {reason}" for (_, reason), n in sorted(self.rejected.items(), key=lambda x: x[0][1])]
        parts += [f"{n} {noun} kept with a quality flag: {reason}" for reason, n in sorted(self.warned.items())]
        return "; ".join(parts)


@dataclass(frozen=True)
class SeriesParts:
    """Per-row 64-bit hashes the series id is combined from (`adapters.series`)."""

    names: np.ndarray
    resources: np.ndarray
    attributes: np.ndarray


@dataclass
class Draft:
    """Rows of one table as an adapter made them, before finalize.

    `time` is each row's event time in uint64 ns (0 when absent), which the
    finalize stage checks against the accept window and writes as the `time`
    column. `rejects` are the format's own refusals, (code, reason, mask) in
    the order they are counted (the first reason that applies to a row wins),
    after the window's. `flags` are the format's quality flags.
    """

    table: Table
    columns: dict[str, pa.Array]
    time: np.ndarray
    time_field: str
    rejects: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    series: SeriesParts | None = None

    def __len__(self) -> int:
        return len(self.time)


@dataclass
class AdaptResult:
    """An adapter's drafts and what it refused.

    `spans` carries span facts for the RED stage, for formats that have spans.
    """

    drafts: list[Draft]
    outcome: Outcome
    spans: object = None
