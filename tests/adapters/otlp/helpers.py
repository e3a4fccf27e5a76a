from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from telemetry_gateway.adapters.base import AcceptWindow, AdaptContext, AdaptResult, Draft, Outcome
from telemetry_gateway.gateway.batch import Caller, Provenance
from telemetry_gateway.gateway.finalize import Finalizer

TESTDATA = Path(__file__).parent / "testdata"
NS = 1_000_000_000


@dataclass(frozen=True)
class Context:
    """A request's provenance and what its adapter may know, as the pipeline would make them."""

    provenance: Provenance
    window: AcceptWindow

    @property
    def received_ns(self) -> int:
        return self.provenance.received_ns

    @property
    def adapt(self) -> AdaptContext:
        return AdaptContext(self.provenance.received_ns, self.window)


def context(received_ns: int, source_kind: str = "otlp", source_id: str = "test", batch_id: str = "b" * 32,
            window: AcceptWindow = AcceptWindow(), tenant: str = "default", region: str = "default") -> Context:
    # region is set as the router would, so rows compare with the golden files whole.
    provenance = Provenance("test", source_kind, source_id, Caller("test"), batch_id, received_ns, tenant, region)
    return Context(provenance, window)


@dataclass
class Finalized:
    table: pa.Table
    outcome: Outcome


def finalized(adapted: AdaptResult | Draft, ctx: Context, outcome: Outcome | None = None) -> Finalized:
    """An adapter's output after the finalize stage, as the pipeline stores it."""
    finalizer = Finalizer(ctx.window)
    if isinstance(adapted, Draft):
        adapted = AdaptResult([adapted], outcome or Outcome())
    tables = [finalizer.finish(d, ctx.provenance, adapted.outcome) for d in adapted.drafts]
    if not tables:
        from telemetry_gateway.schema import POINTS, arrow_schema

        return Finalized(arrow_schema(POINTS).empty_table(), adapted.outcome)
    return Finalized(pa.concat_tables(tables), adapted.outcome)
