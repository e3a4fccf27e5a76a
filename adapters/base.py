"""What every adapter takes and returns.

An adapter is a pure function from decoded input to an Arrow table in the
unified schema plus an account of what it could not keep. It knows nothing of
sockets or stores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class AcceptWindow:
    """Event times outside [received - max_age, received + max_future] are refused."""

    max_age_ns: int = 14 * 86400 * NS_PER_S
    max_future_ns: int = 3600 * NS_PER_S


@dataclass(frozen=True)
class IngestContext:
    source_kind: str
    source_id: str
    batch_id: str
    received_ns: int
    window: AcceptWindow = AcceptWindow()
    tenant: str = "default"
    region: str = "default"


@dataclass
class Outcome:
    """Counts of refused items and of kept-but-flagged items, by reason."""

    rejected: Counter = field(default_factory=Counter)
    warned: Counter = field(default_factory=Counter)

    def reject(self, reason: str, n: int = 1) -> None:
        if n:
            self.rejected[reason] += n

    def warn(self, reason: str, n: int = 1) -> None:
        if n:
            self.warned[reason] += n

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def message(self, noun: str) -> str:
        """One English sentence for OTLP partial_success.error_message."""
        parts = [f"{n} {noun} rejected: {reason}" for reason, n in sorted(self.rejected.items())]
        parts += [f"{n} {noun} kept with a quality flag: {reason}" for reason, n in sorted(self.warned.items())]
        return "; ".join(parts)


@dataclass
class AdaptResult:
    table: pa.Table
    outcome: Outcome
