"""What a request's sender is told: how many items were kept and refused, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    rejected: int
    message: str
