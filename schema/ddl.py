"""ClickHouse DDL derived from `schema.model`.

Identifiers are quoted with backticks and checked against a strict pattern, so
no table or database name from configuration is ever spliced into SQL raw.
"""

from __future__ import annotations

import re

from telemetry_gateway.schema.model import Column, Table, View

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Plain MergeTree deduplicates an insert carrying an insert_deduplication_token
# only when this window is > 0; the spool replays batches with their token.
TABLE_SETTINGS = ("non_replicated_deduplication_window = 10000", "ttl_only_drop_parts = 1")


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a valid ClickHouse identifier: {name!r}")
    return f"`{name}`"


def column_sql(col: Column) -> str:
    parts = [ident(col.name), col.type.clickhouse]
    if col.alias:
        parts.append(f"ALIAS {col.alias}")
    if col.codec:
        parts.append(col.codec)
    parts.append("COMMENT " + quote(col.doc))
    return " ".join(parts)


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_table(database: str, table: Table, version: int = 1, engine: str | None = None) -> str:
    """CREATE TABLE as of a schema version; `engine` replaces the table's (a Replicated one on clusters)."""
    cols = [c for c in table.columns if c.since <= version]
    body = ",\n    ".join([column_sql(c) for c in cols] + list(table.indexes))
    settings = ", ".join(TABLE_SETTINGS + table.settings)
    return (
        f"CREATE TABLE IF NOT EXISTS {ident(database)}.{ident(table.name)}\n(\n    {body}\n)\n"
        f"ENGINE = {engine or table.engine}\nPARTITION BY {table.partition_by}\nORDER BY {table.order_by}\n"
        f"SETTINGS {settings}\nCOMMENT {quote(table.doc)}"
    )


def add_columns(database: str, table: Table, version: int) -> list[str]:
    return [
        f"ALTER TABLE {ident(database)}.{ident(table.name)} ADD COLUMN IF NOT EXISTS {column_sql(c)}"
        for c in table.columns
        if c.since == version
    ]


def modify_columns(database: str, table: Table, version: int) -> list[str]:
    """Columns whose stored type changed in `version`. `mutations_sync` waits for the rewrite, so a
    crash leaves the migration unrecorded and it runs again; retyping to the type a column has is a no-op."""
    return [
        f"ALTER TABLE {ident(database)}.{ident(table.name)} MODIFY COLUMN {column_sql(c)} SETTINGS mutations_sync = 1"
        for c in table.columns
        if c.retyped == version
    ]


def set_retention(database: str, table: Table, days: int) -> str:
    """The TTL statement for a table that has a time to expire by (`ttl_column`)."""
    target = f"{ident(database)}.{ident(table.name)}"
    if days <= 0:
        return f"ALTER TABLE {target} REMOVE TTL"
    return f"ALTER TABLE {target} MODIFY TTL toDateTime({ident(table.ttl_column)}) + INTERVAL {int(days)} DAY"


def create_view(database: str, view: View) -> str:
    query = view.query.replace("{db}", ident(database))
    return f"CREATE VIEW IF NOT EXISTS {ident(database)}.{ident(view.name)} AS {query} COMMENT {quote(view.doc)}"
