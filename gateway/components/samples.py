"""Prometheus-model samples a poller collected, as one payload for the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Outcome
from telemetry_gateway.adapters.points import PointRows
from telemetry_gateway.adapters.prometheus.families import add_samples


@dataclass(frozen=True)
class Samples:
    samples: list
    lookup: Callable            # family name -> FamilyInfo | None, from the scraped page
    # Adds derived points (probe series) to the same rows.
    extra: Callable[[PointRows], None] | None = None

    def __len__(self) -> int:
        return 64 * max(len(self.samples), 1)


def adapt_samples(payload: Samples, ctx: AdaptContext, state) -> AdaptResult:
    outcome = Outcome()
    rows = PointRows(state.sets)
    add_samples(rows, payload.samples, lambda name: payload.lookup(name) or state.prometheus.lookup(name), outcome,
                state.sets.names)
    if payload.extra is not None:
        payload.extra(rows)
    return AdaptResult([rows.finish()], outcome)
