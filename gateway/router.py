"""The router: which regional store each row enters.

Without a policy, every row goes to the default region (`default` when
configured, else the first). With one, `CompiledPolicy.place` decides per row
from the tenant's home region and the residency rules, and rows that may go
nowhere lawfully are refused with the rule's reason, never sent to a default.
A batch whose rows go to several regions becomes one batch per region, each
with its `region` column and provenance set to that region.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pyarrow as pa

from telemetry_gateway.gateway.access import DEFAULT_TENANT, CompiledPolicy, Placement
from telemetry_gateway.gateway.batch import Batch, Provenance
from telemetry_gateway.schema import arrow_schema

__all__ = ["DEFAULT_TENANT", "RegionRouter", "Routed"]


class Routed:
    """The batches a batch became, and its rows refused by reason."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.refused: Counter = Counter()


class RegionRouter:
    def __init__(self, regions: list[str]) -> None:
        if not regions:
            raise ValueError("at least one region is needed")
        self.default_region = "default" if "default" in regions else regions[0]

    def region_for(self, provenance: Provenance, policy: CompiledPolicy | None = None) -> str:
        """The region of a request's own records (its ingest_log row): the tenant's home."""
        return policy.home_region(provenance.tenant) if policy is not None else self.default_region

    def route(self, batch: Batch, policy: CompiledPolicy | None = None) -> Routed:
        routed = Routed()
        if policy is None:
            routed.batches.append(_in_region(batch, self.default_region))
            return routed
        placement = policy.place(batch.provenance.tenant, batch.rows)
        if placement.region is not None:
            routed.batches.append(_in_region(batch, placement.region))
            return routed
        _split(batch, placement, routed)
        return routed


def _split(batch: Batch, placement: Placement, routed: Routed) -> None:
    for reason, mask in placement.refusals.items():
        routed.refused[reason] += batch.rows.num_rows if mask is None else int(mask.sum())
    if placement.regions is None:
        return
    for i, region in enumerate(sorted({r for r in placement.regions if r is not None})):
        rows = batch.rows.filter(pa.array(placement.regions == region))
        # Each part is its own batch in the spool and the store's dedup window: its own id.
        provenance = batch.provenance if i == 0 else replace(batch.provenance.derived(), dead_letter_id="")
        part = Batch(batch.table, rows, provenance, hold=batch.hold, consumes=batch.consumes if i == 0 else ())
        routed.batches.append(_in_region(part, region))


def _in_region(batch: Batch, region: str) -> Batch:
    batch.provenance = replace(batch.provenance, region=region)
    schema = arrow_schema(batch.table)
    index = schema.get_field_index("region")
    # The schema's own field (not a new nullable one), so the rows keep the table's exact schema.
    column = pa.repeat(pa.scalar(region, pa.string()), batch.rows.num_rows)
    batch.rows = batch.rows.set_column(index, schema.field(index), column)
    return batch

