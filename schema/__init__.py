"""The unified schema: tables defined once in `schema.model`, everything else derived."""

from telemetry_gateway.schema.arrow import arrow_schema, column_default, conform, default_array
from telemetry_gateway.schema.model import AUDIT_LOG, INGEST_LOG, LOGS, POINTS, SERIES, SPANS, TABLES, Column, Table

__all__ = ["AUDIT_LOG", "INGEST_LOG", "LOGS", "POINTS", "SERIES", "SPANS", "TABLES", "Column", "Table", "arrow_schema", "column_default",
           "conform", "default_array"]
