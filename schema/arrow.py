"""Arrow schemas derived from `schema.model`: the in-memory shape of every batch."""

from __future__ import annotations

from functools import cache

import pyarrow as pa

from schema.model import Table


@cache
def arrow_schema(table: Table) -> pa.Schema:
    """Schema of the columns a writer supplies, in table order."""
    return pa.schema([pa.field(c.name, c.type.arrow, nullable=c.type.clickhouse.startswith("Nullable")) for c in table.sent_columns()])
