"""Render the column reference (schema/SCHEMA.md) from `schema.model`.

`python -m telemetry_gateway.schema.docs > schema/SCHEMA.md` regenerates it; a test keeps the
committed file in step with the model.
"""

from __future__ import annotations

from telemetry_gateway.schema.ddl import TABLE_SETTINGS
from telemetry_gateway.schema import layout
from telemetry_gateway.schema.migrations import ALL_VIEWS, live_tables
from telemetry_gateway.schema.model import POINTS, Table


def render_table(table: Table, heading: str = "") -> list[str]:
    lines = [heading or f"## `{table.name}`", "", table.doc, "", "| column | ClickHouse type | meaning |",
             "| --- | --- | --- |"]
    for col in table.columns:
        alias = f" ALIAS `{col.alias}`" if col.alias else ""
        lines.append(f"| `{col.name}` | `{col.type.clickhouse}`{alias} | {col.doc} |")
    if heading:
        return lines + [""]
    engine = "" if table.engine == "MergeTree" else f"ENGINE `{table.engine}`, "
    lines += ["", f"{engine}PARTITION BY `{table.partition_by}`, ORDER BY `{table.order_by}`.", ""]
    lines += [f"- {reason}" for reason in table.reasons]
    lines.append("")
    return lines


def render() -> str:
    lines = [
        "# Schema reference",
        "",
        "Generated from `schema/model.py` by `python -m telemetry_gateway.schema.docs`; do not edit by hand.",
        "",
        "Engine MergeTree with settings: " + ", ".join(f"`{s}`" for s in TABLE_SETTINGS) + ".",
        "",
    ]
    lines += render_table(POINTS, f"## `{POINTS.name}`")
    lines += ["How points are stored:", "", layout.__doc__.split("\n\n", 1)[1].strip(), ""]
    for table in live_tables():
        lines += render_table(table)
    lines += [f"## `{layout.SERIES_LABELS}`", "", layout.SERIES_LABELS_DOC, "", "| column | ClickHouse type |",
              "| --- | --- |"] + [f"| `{c.name}` | `{c.type.clickhouse}` |" for c in layout.LABEL_COLUMNS]
    lines += ["", f"ENGINE `{layout.LABELS_ENGINE}`.", ""]
    for view in ALL_VIEWS:
        if view.name != POINTS.name:
            lines += [f"## view `{view.name}`", "", view.doc, "", f"```sql\n{view.query}\n```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
