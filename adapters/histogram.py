"""An explicit-bucket duration histogram filled one observation at a time (RED, log rules)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Seconds; the OpenTelemetry HTTP duration advice, which most SLO latency thresholds fall on.
DURATION_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


@dataclass
class DurationHistogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS) + 1))
    count: int = 0
    total: float = 0.0
    min: float = float("inf")
    max: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds
        self.min, self.max = min(self.min, seconds), max(self.max, seconds)

    def point(self) -> dict:
        """Keyword arguments for `PointRows.add` of a histogram point."""
        return dict(kind="histogram", count=self.count, sum_=self.total, bounds=DURATION_BOUNDS,
                    bucket_counts=self.buckets, min_=self.min, max_=self.max)
