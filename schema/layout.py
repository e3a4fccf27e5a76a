"""How metric points are stored: narrow rows per metric kind, each series' labels once.

Batches of points travel in the shape of `POINTS` (`metric_points`: every
column of every kind, attributes on every row). Stored as such, every insert
and merge paid for each row's attribute maps and for the columns its kind
does not use. So a store keeps, since schema version 7:

* `series`: one row per series and metadata version, with its attributes,
  resource and scope, written once (`gateway.store.series`);
* one narrow table per kind (`KIND_TABLES`): what may vary per point, the
  series id, and columns that are constant along a series (service, unit,
  source), which ClickHouse compresses to almost nothing.

Those constant text columns are plain `String`, not `LowCardinality`, since
schema version 9: each LowCardinality column costs a merge about 0.4 CPU-us per
row to rebuild its dictionary, and seven of them made merges the largest
single cost of ingest (3.9 CPU-us per row to merge ten 180k-row parts into one,
against 0.85 as plain strings, for 0.3 more bytes per row on disk). The views
still show them as LowCardinality, as the wide table did.

The batch id is kept per point as `batch_ref`, a number: batch ids are 64
time-ordered bits (`gateway.batch.new_batch_id`), so along a series it grows
in near-regular steps that DoubleDelta stores in a few bytes, where the id as
text took 16. Ids of older releases (32 hex digits) are kept whole in
`batch_id_full`, empty for new ids.

`metric_points` then gives the old rows back, so every documented query
answers as before. Since schema version 11 it is a Merge table over the kind
tables (a view joining them to `series FINAL` before), whose label columns
are ALIAS columns: `joinGet` from `series_labels`, a Join table in memory
holding each series' newest labels, fed from `series` by a materialized view.
The view's join cost every query about 4 ms of planning, even one that read
no label. Only scope name and version, which do not enter the series id, show
the series' newest for all its points. `SELECT *` shows ALIAS columns only
with `asterisk_include_alias_columns = 1`, which the embedded store's
sessions set.

Prometheus, VictoriaMetrics and ClickHouse's own TimeSeries engine keep labels
once per series too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.schema.arrow import arrow_schema
from telemetry_gateway.schema.ddl import ident, quote
from telemetry_gateway.schema.model import (ATTRS, FLOAT, LABEL, POINTS, SERIES, TEXT, TIME_CODEC, UINT64, ZSTD, Column,
                                            ColumnType, Table, View)

LAYOUT_VERSION = 7
PLAIN_TEXT_VERSION = 9
LABELS_VERSION = 11

# Columns of `metric_points` taken from the series' newest `series` row.
SERIES_SIDE = ("resource_attributes", "scope_name", "scope_version", "attributes")
# Kept on every row: what varies per point, and what is constant along a series and so nearly free.
PER_POINT = ("tenant", "metric_name", "series_id", "time", "start_time", "service_name", "description", "unit",
             "kind", "temporality", "is_monotonic", "point_flags", "quality_flags", "exemplar_trace_ids",
             "received_time", "source_kind", "source_id", "region")

BATCH_REF = Column("batch_ref", UINT64, "The batch id as a number (`batch_id` is its 16 hex digits).",
                   "CODEC(DoubleDelta, ZSTD(1))", since=LAYOUT_VERSION)
BATCH_ID_FULL = Column("batch_id_full", TEXT, "The batch id when it is not `batch_ref` in hex (ids made before "
                       "schema version 7); empty otherwise.", ZSTD, since=LAYOUT_VERSION)
_CODECS = {"time": "CODEC(DoubleDelta, ZSTD(1))", "received_time": "CODEC(DoubleDelta, ZSTD(1))",
           "start_time": TIME_CODEC}


# Read through metric_points, a point of these kinds has no value: NaN, as in the wide table.
_NO_VALUE = Column("value", FLOAT, "Always NaN: points of this kind have no single value.", alias="nan",
                   since=LABELS_VERSION)


@dataclass(frozen=True)
class KindTable:
    table: Table
    kinds: tuple[str, ...]


_KEY_LABELS = ("tenant", "metric_name")


def _from_points(names: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(_stored(replace(POINTS.column(n), since=LAYOUT_VERSION, codec=_CODECS.get(n, POINTS.column(n).codec)))
                 for n in names)


def _stored(col: Column) -> Column:
    if col.type == LABEL and col.name not in _KEY_LABELS:
        return replace(col, type=TEXT, retyped=PLAIN_TEXT_VERSION)
    return col


def _kind_table(name: str, doc: str, kinds: tuple[str, ...], own: tuple[str, ...]) -> KindTable:
    table = Table(
        name=name,
        doc=doc,
        columns=_from_points(PER_POINT[:4]) + _from_points(own) + _from_points(PER_POINT[4:])
        + (BATCH_REF, BATCH_ID_FULL) + (() if "value" in own else (_NO_VALUE,)),
        order_by="(tenant, metric_name, series_id, time)",
        partition_by="toDate(time)",
        ttl_column="time",
        reasons=(
            "ORDER BY (tenant, metric_name, series_id, time): a series' points sit together in time order; "
            "its labels are in `series`, once.",
            "Codecs: DoubleDelta for times and batch_ref (regular steps along a series), Gorilla for values.",
        ),
        since=LAYOUT_VERSION,
    )
    return KindTable(table, kinds)


_HIST = ("count", "sum", "min", "max")
KIND_TABLES = (
    _kind_table("samples", "Gauge and sum points, one narrow row each; their labels are in `series`.",
                ("gauge", "sum"), ("value",)),
    _kind_table("histogram_points", "Explicit-bucket histogram points.", ("histogram",),
                _HIST + ("bucket_bounds", "bucket_counts")),
    _kind_table("exp_histogram_points", "Exponential histogram points.", ("exponential_histogram",),
                _HIST + ("exp_scale", "exp_zero_count", "exp_zero_threshold", "exp_positive_offset",
                         "exp_positive_counts", "exp_negative_offset", "exp_negative_counts")),
    _kind_table("summary_points", "Summary points.", ("summary",), ("count", "sum", "quantiles", "quantile_values")),
)
LAYOUT_TABLES = tuple(k.table for k in KIND_TABLES)
_ALL_KINDS = tuple(kind for k in KIND_TABLES for kind in k.kinds)


# -- the Arrow side: what a group of points becomes ------------------------------------------

def batch_ref(batch_id: str) -> int:
    """The first 64 bits of a hex batch id; 0 for anything else. SQL: `BATCH_REF_SQL`."""
    try:
        return int(batch_id[:16], 16) if len(batch_id) >= 16 else 0
    except ValueError:
        return 0


def batch_id_of(ref: int) -> str:
    return f"{ref:016x}"


BATCH_REF_SQL = ("if(length(batch_id) >= 16 AND match(substring(batch_id, 1, 16), '^[0-9a-fA-F]{16}$'), "
                 "reinterpretAsUInt64(reverse(unhex(substring(batch_id, 1, 16)))), 0)")
BATCH_ID_SQL = "if(batch_id_full != '', batch_id_full, leftPad(lower(hex(batch_ref)), 16, '0'))"


def split_points(points: pa.Table) -> list[tuple[Table, pa.Table]]:
    """The rows of each kind table for points in `POINTS`' shape."""
    ids = pc.dictionary_encode(points.column("batch_id")).combine_chunks()
    refs, fulls = [], []
    for batch_id in ids.dictionary.to_pylist():
        ref = batch_ref(batch_id)
        refs.append(ref)
        fulls.append("" if batch_id_of(ref) == batch_id else batch_id)
    index = ids.indices.to_numpy(zero_copy_only=False)
    rows = points.append_column("batch_ref", pa.array(np.array(refs, np.uint64)[index]))
    rows = rows.append_column("batch_id_full", pa.array(fulls, pa.string()).take(ids.indices))
    return [(k.table, _select(k.table, part)) for k, part in _by_kind(rows)]


def not_stored_in(points: pa.Table, tables: list[str]) -> pa.Table:
    """The points whose kind table is not among `tables` (those already hold their share)."""
    kinds = [kind for k in KIND_TABLES if k.table.name in tables for kind in k.kinds]
    if not kinds or "kind" not in points.column_names:
        return points
    return points.filter(pc.invert(pc.is_in(points.column("kind"), pa.array(kinds))))


def _by_kind(points: pa.Table):
    kinds = points.column("kind").unique().to_pylist()
    unknown = [k for k in kinds if k not in _ALL_KINDS]
    if unknown:
        raise ValueError(f"points of unknown kind {unknown[0]!r} cannot be stored")
    for kind_table in KIND_TABLES:
        if all(k in kind_table.kinds for k in kinds):
            yield kind_table, points  # the common case: one table takes the whole group
            return
    for kind_table in KIND_TABLES:
        part = points.filter(pc.is_in(points.column("kind"), pa.array(kind_table.kinds)))
        if part.num_rows:
            yield kind_table, part


def _select(table: Table, rows: pa.Table) -> pa.Table:
    schema = arrow_schema(table)
    return pa.Table.from_arrays([rows.column(f.name).cast(f.type) for f in schema], schema=schema)


# -- the SQL side: the table that gives the old rows back, and the move of old rows ------------

BY_KIND = "points_by_kind"


def by_kind_columns() -> tuple[Column, ...]:
    """Every column of any kind table: those of `POINTS` in its order, then the batch columns."""
    stored = {c.name for k in KIND_TABLES for c in k.table.columns}
    return tuple(c for c in POINTS.columns if c.name in stored) + (BATCH_REF, BATCH_ID_FULL)


def create_by_kind(database: str) -> str:
    """The Merge table of schema versions 7 to 10, which the `metric_points` view read."""
    columns = ", ".join(f"{ident(c.name)} {c.type.clickhouse}" for c in by_kind_columns())
    return (f"CREATE TABLE IF NOT EXISTS {ident(database)}.{ident(BY_KIND)} ({columns}) "
            f"ENGINE = Merge({quote(database)}, {quote(_KIND_TABLES_RE)}) "
            f"COMMENT {quote('The kind tables read as one, for the metric_points view.')}")


_KIND_TABLES_RE = "^(" + "|".join(k.table.name for k in KIND_TABLES) + ")$"


def _points_query() -> str:
    series_cols = ", ".join(("tenant", "metric_name", "series_id") + SERIES_SIDE)
    scalar = ", ".join(f"'{k}'" for k in KIND_TABLES[0].kinds)
    outer = []
    for c in POINTS.columns:
        if c.name == "value":
            outer.append(f"if(p.kind IN ({scalar}), p.value, nan) AS value")
        elif c.name == "batch_id":
            outer.append(f"{BATCH_ID_SQL.replace('batch_', 'p.batch_')} AS batch_id")
        else:
            outer.append(f"{'s' if c.name in SERIES_SIDE else 'p'}.{c.name} AS {c.name}")
    return (
        f"SELECT {', '.join(outer)} FROM {{db}}.{BY_KIND} AS p "
        f"ANY LEFT JOIN (SELECT {series_cols} FROM {{db}}.series FINAL) AS s "
        "ON p.tenant = s.tenant AND p.metric_name = s.metric_name AND p.series_id = s.series_id"
    )


POINTS_VIEW = View(
    name="metric_points",
    doc=("Every metric point, one row each, as the `metric_points` table of schema versions before 7 held it: "
         "the kind tables joined to each series' newest `series` row. Replaced in version 11 by a Merge table."),
    query=_points_query(),
    since=LAYOUT_VERSION,
)

# Since version 11 (see the module's doc): the labels of `metric_points`, looked up per row.
SERIES_LABELS = "series_labels"
SERIES_LABELS_FEED = "series_labels_feed"
_LABEL_KEY = ("tenant", "metric_name", "series_id")
SERIES_LABELS_DOC = ("Each series' newest labels, held in memory, for the label columns of `metric_points` (joinGet). "
                     "Fed from `series` by the materialized view `series_labels_feed`: a later row for a series "
                     "replaces the earlier.")


_PLAIN = {ATTRS.clickhouse: ColumnType("Map(String, String)", ATTRS.arrow), LABEL.clickhouse: TEXT}
# The labels without LowCardinality: joinGet of a Map with LowCardinality keys cost 6x one with plain keys
# (42 against 7 ms for 57k rows); the ALIAS columns' types convert them back.
LABEL_COLUMNS = tuple(SERIES.column(n) for n in _LABEL_KEY) + tuple(
    replace(SERIES.column(n), type=_PLAIN.get(SERIES.column(n).type.clickhouse, SERIES.column(n).type))
    for n in SERIES_SIDE)
LABELS_ENGINE = f"Join(ANY, LEFT, {', '.join(_LABEL_KEY)}) SETTINGS join_any_take_last_row = 1"


def create_series_labels(database: str, on_disk: bool = True) -> str:
    """`on_disk` False: the table is filled from `series` at each start (`fill_labels`), and keeps no file. A
    persistent Join table appends a file per insert, and one torn by a crash stops the engine from starting:
    chDB, the gateway's own process, then could not open the store at all."""
    cols = ", ".join(f"{ident(c.name)} {c.type.clickhouse}" for c in LABEL_COLUMNS)
    return (f"CREATE TABLE IF NOT EXISTS {ident(database)}.{ident(SERIES_LABELS)} ({cols}) "
            f"ENGINE = {LABELS_ENGINE}, persistent = {int(on_disk)} COMMENT {quote(SERIES_LABELS_DOC)}")


def _labels_select(db: str, final: bool = False) -> str:
    return f"SELECT {', '.join(_LABEL_KEY + SERIES_SIDE)} FROM {db}.`series`{' FINAL' if final else ''}"


def fill_labels(database: str, table: str = SERIES_LABELS) -> str:
    """Each series' newest labels, from `series`, into `table`."""
    db = ident(database)
    return f"INSERT INTO {db}.{ident(table)} {_labels_select(db, final=True)}"


def label_statements(database: str, on_disk: bool = True) -> list[str]:
    """The Join table, its feed, and its first fill. The feed comes first, so no series written during the
    fill is missed; the fill is `series FINAL`, so running it again after a crash changes no answer."""
    db = ident(database)
    return [
        create_series_labels(database, on_disk),
        (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{ident(SERIES_LABELS_FEED)} TO {db}.{ident(SERIES_LABELS)} "
         f"AS {_labels_select(db)}"),
        fill_labels(database),
    ]


def forget_statements(database: str) -> list[str]:
    """The ids of series with no point left; the delete of their `series` rows; then `series_labels` built
    anew from what `series` keeps and swapped in whole, as a Join table with a key of several columns cannot
    be read or mutated row by row. Readers see the old labels or the new, never none; the feed inserts by
    name, so into the new."""
    db = ident(database)
    gone = (f"({', '.join(_LABEL_KEY)}) NOT IN (SELECT DISTINCT {', '.join(_LABEL_KEY)} "
            f"FROM {db}.{ident(POINTS.name)})")
    labels, rebuilt = f"{db}.{ident(SERIES_LABELS)}", f"{db}.{ident(SERIES_LABELS + '_next')}"
    return [
        f"SELECT DISTINCT series_id FROM {db}.`series` WHERE {gone}",
        f"ALTER TABLE {db}.`series` DELETE WHERE {gone} SETTINGS mutations_sync = 1",
        f"DROP TABLE IF EXISTS {rebuilt} SYNC",
        f"CREATE TABLE {rebuilt} AS {labels}",
        fill_labels(database, SERIES_LABELS + "_next"),
        f"EXCHANGE TABLES {labels} AND {rebuilt}",
        f"DROP TABLE {rebuilt} SYNC",
    ]


def points_columns(database: str) -> list[str]:
    """`metric_points`' columns: the kind tables' (read through), labels and batch id computed when read."""
    db_labels = f"{database}.{SERIES_LABELS}"
    out = []
    for c in POINTS.columns:
        if c.name in SERIES_SIDE:
            alias = f" ALIAS joinGet({quote(db_labels)}, {quote(c.name)}, {', '.join(_LABEL_KEY)})"
        elif c.name == "batch_id":
            alias = f" ALIAS {BATCH_ID_SQL}"
        else:
            alias = ""
        out.append(f"{ident(c.name)} {c.type.clickhouse}{alias} COMMENT {quote(c.doc)}")
    # MATERIALIZED: left out of SELECT *, as the old table had no such columns; still read from the kind tables.
    out += [f"{ident(c.name)} {c.type.clickhouse} MATERIALIZED {'0' if c.type == UINT64 else quote('')} "
            f"COMMENT {quote(c.doc)}" for c in (BATCH_REF, BATCH_ID_FULL)]
    return out


def create_points_table(database: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {ident(database)}.{ident(POINTS.name)} "
            f"({', '.join(points_columns(database))}) ENGINE = Merge({quote(database)}, {quote(_KIND_TABLES_RE)}) "
            f"COMMENT {quote(POINTS.doc)}")


OLD_POINTS = "metric_points_v6"


def move_statements(database: str) -> list[str]:
    """Statements that copy the rows of the old wide table (renamed `OLD_POINTS`) into the layout.

    The kind tables are emptied first, so a move cut short runs again from the start.
    """
    db = ident(database)
    old = f"{db}.{ident(OLD_POINTS)}"
    statements = [f"TRUNCATE TABLE {db}.{ident(t.name)}" for t in LAYOUT_TABLES]
    statements.append(_move_series(db, old))
    for kind_table in KIND_TABLES:
        names = [c.name for c in kind_table.table.sent_columns(LAYOUT_VERSION)]
        select = ", ".join(BATCH_REF_SQL if n == "batch_ref" else "batch_id" if n == "batch_id_full" else n
                           for n in names)
        kinds = ", ".join(f"'{k}'" for k in kind_table.kinds)
        statements.append(f"INSERT INTO {db}.{ident(kind_table.table.name)} ({', '.join(names)}) "
                          f"SELECT {select} FROM {old} WHERE kind IN ({kinds})")
    return statements


def _move_series(db: str, old: str) -> str:
    # `updated` 0: a row the gateway wrote since version 6 describes the series as well or newer.
    keys = ("tenant", "metric_name", "series_id")
    picks = []
    for name in (c.name for c in SERIES.columns):
        if name in keys:
            picks.append(name)
        elif name == "seen_time":
            picks.append("max(time)")
        elif name == "updated":
            picks.append("toDateTime64(0, 9, 'UTC')")
        else:
            picks.append(f"argMax({name}, time)")
    names = ", ".join(c.name for c in SERIES.columns)
    return f"INSERT INTO {db}.`series` ({names}) SELECT {', '.join(picks)} FROM {old} GROUP BY {', '.join(keys)}"


def count_statements(database: str) -> tuple[str, str]:
    """Rows in the old table, and in the kind tables: equal once a move is complete."""
    db = ident(database)
    new = " + ".join(f"(SELECT count() FROM {db}.{ident(k.table.name)})" for k in KIND_TABLES)
    return f"SELECT count() FROM {db}.{ident(OLD_POINTS)}", f"SELECT {new}"
