"""Arrow schemas derived from `schema.model`: the in-memory shape of every batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.schema.model import Table


_SCHEMAS: dict[str, pa.Schema] = {}


def arrow_schema(table: Table) -> pa.Schema:
    """Schema of the columns a writer supplies, in table order."""
    # By name: a Table is a frozen dataclass, and hashing one hashes every column (measured on the hot path).
    schema = _SCHEMAS.get(table.name)
    if schema is None:
        fields = [pa.field(c.name, c.type.arrow, nullable=c.type.clickhouse.startswith("Nullable"))
                  for c in table.sent_columns()]
        schema = _SCHEMAS[table.name] = pa.schema(fields)
    return schema


def conform(table: Table, rows: pa.Table) -> pa.Table:
    """`rows` in exactly the table's Arrow schema, nullability included.

    Batches from different sources (or spooled by an older release) may differ
    in nullability, column order or missing columns; batches that are concatenated
    into one insert must not. Nulls in a non-nullable column become the
    column's default, as ClickHouse would store them; a missing column is all
    defaults. A value that cannot be cast raises (a poison batch).
    """
    schema = arrow_schema(table)
    if rows.schema.equals(schema):
        return rows
    n = rows.num_rows
    arrays = []
    for field in schema:
        if field.name not in rows.column_names:
            arrays.append(column_default(table, field, n))
            continue
        column = rows.column(field.name)
        if column.type != field.type:
            column = column.cast(field.type)
        if not field.nullable and column.null_count:
            column = pc.if_else(pc.is_null(column), default_array(field, n), column)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def column_default(table: Table, field: pa.Field, n: int) -> pa.Array:
    """n rows of what a row that does not use the column holds (its `fill`, else the type's zero)."""
    fill = table.column(field.name).fill
    return default_array(field, n) if fill is None else pa.repeat(pa.scalar(fill, field.type), n)


def default_array(field: pa.Field, n: int) -> pa.Array:
    """n rows of the column's default: NULL where nullable, else 0, '' or empty."""
    if field.nullable:
        return pa.nulls(n, field.type)
    if pa.types.is_map(field.type):
        empty = pa.array([], pa.string())
        return pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), empty, empty)
    if pa.types.is_list(field.type):
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], field.type.value_type))
    if pa.types.is_string(field.type):
        return pa.repeat(pa.scalar("", field.type), n)
    if pa.types.is_boolean(field.type):
        return pa.repeat(pa.scalar(False, field.type), n)
    return pa.repeat(pa.scalar(0, field.type), n)
