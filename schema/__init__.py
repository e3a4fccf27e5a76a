"""The unified schema: tables defined once in `schema.model`, everything else derived."""

from telemetry_gateway.schema.arrow import arrow_schema, conform
from telemetry_gateway.schema.model import LOGS, POINTS, SPANS, TABLES, Column, Table

__all__ = ["LOGS", "POINTS", "SPANS", "TABLES", "Column", "Table", "arrow_schema", "conform"]
