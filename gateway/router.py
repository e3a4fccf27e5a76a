"""The router: the one place that decides which tenant owns data and which region keeps it.

`tenant_of(caller)` runs first, when a request arrives: the tenant's state
(attribute sets, series limits, counters) and series ids depend on it.
`route(batch)` runs last, before the sink: it sets the batch's region and its
`region` column. Today one tenant and one region take everything (the
`default` region when configured, else the first); tenants from
authenticated callers and residency rules replace the bodies of these two
methods.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from telemetry_gateway.gateway.batch import Batch, Caller, Provenance
from telemetry_gateway.schema import arrow_schema

DEFAULT_TENANT = "default"


class RegionRouter:
    def __init__(self, regions: list[str]) -> None:
        if not regions:
            raise ValueError("at least one region is needed")
        self.default_region = "default" if "default" in regions else regions[0]

    def tenant_of(self, caller: Caller) -> str:
        return DEFAULT_TENANT

    def region_for(self, provenance: Provenance) -> str:
        return self.default_region

    def route(self, batch: Batch) -> Batch:
        region = self.region_for(batch.provenance)
        batch.provenance = replace(batch.provenance, region=region)
        schema = arrow_schema(batch.table)
        index = schema.get_field_index("region")
        # The schema's own field (not a new nullable one), so the rows keep the table's exact schema.
        column = pa.repeat(pa.scalar(region, pa.string()), batch.rows.num_rows)
        batch.rows = batch.rows.set_column(index, schema.field(index), column)
        return batch

