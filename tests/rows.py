"""Turning Arrow tables and query results into plain rows for exact comparisons."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc


def plain_rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[dict]:
    """Rows as JSON-able dicts: times as int ns, maps as dicts."""
    columns = {}
    for field in table.schema:
        if field.name in drop:
            continue
        col = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            col = pc.cast(col, pa.int64())
        columns[field.name] = col.to_pylist()
        if pa.types.is_map(field.type):
            columns[field.name] = [dict(v) if v is not None else None for v in columns[field.name]]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def check_golden(rows: list[dict], path: Path) -> None:
    """Compare with a golden file; UPDATE_GOLDEN=1 rewrites it (review the diff!)."""
    text = json.dumps(rows, indent=1, sort_keys=True, default=str) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    expected = json.loads(path.read_text())
    assert json.loads(text) == expected
