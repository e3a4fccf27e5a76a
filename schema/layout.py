"""How metric points are stored: narrow rows per metric kind, each series' labels once.

Batches of points travel in the shape of `POINTS` (`metric_points`: every
column of every kind, attributes on every row). Stored as such, every insert
and merge paid for each row's attribute maps and for the columns its kind
does not use. So a store keeps, since schema version 7:

* `series`: one row per series and metadata version, with its attributes,
  resource and scope, written once (`gateway.store.series`);
* one narrow table per kind (`KIND_TABLES`): what may vary per point, the
  series id, the service name (constant along a series, so nearly free on
  disk, and kept here as the filter of most SLO queries) and the batch.

Since schema version 11 two more groups of columns left the kind tables, each
for where it varies:

* a point's metric metadata (description, unit, kind, temporality,
  monotonicity) is in `series`, one row per version of it, and the point
  names its version by `meta`, a 64-bit key of the metadata (`meta_key`,
  `META_SQL`). A description that arrives later makes a new version; older
  points keep theirs.
* where a batch came from (received time, source kind and id, region) is in
  `metric_batches`, one row per batch, keyed as the points carry the batch id.

Every column costs each insert and merge, however well it compresses: without
these nine, the chDB insert threads and merges took 0.38 CPU-s per million
points less under OTLP/HTTP load, for 0.12 more on the storing thread, which
keys the metadata and writes the batches.

The text columns left are plain `String`, not `LowCardinality`, since
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

`metric_points` is then a view: the kind tables (read as one through a Merge
table) joined to the `series` row of each point's series and metadata
version and to the `metric_batches` row of its batch, giving the old rows
back, so every documented query answers as before. Only scope name and
version, which enter neither the series id nor the version, show the
version's newest for all its points. Each join adds a few milliseconds to
every query of the view, which small queries feel (`python -m loadtest.queries`).

Prometheus, VictoriaMetrics and ClickHouse's own TimeSeries engine keep labels
once per series too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.schema.arrow import arrow_schema
from telemetry_gateway.schema.ddl import ident, quote
from telemetry_gateway.schema.model import LABEL, POINTS, SERIES, TEXT, TIME_CODEC, UINT64, ZSTD, Column, Table, View

LAYOUT_VERSION = 7
PLAIN_TEXT_VERSION = 9
META_VERSION = 11

# Columns of `metric_points` taken from the point's `series` row.
SERIES_SIDE = ("resource_attributes", "scope_name", "scope_version", "attributes")
# Metadata kept per point until version 11, since then per series version.
META_COLUMNS = ("description", "unit", "kind", "temporality", "is_monotonic")
# Provenance kept per point until version 11, since then per batch in `metric_batches`.
BATCH_SIDE = ("received_time", "source_kind", "source_id", "region")
# Kept on every row: what varies per point, and what is constant along a series and so nearly free.
PER_POINT = ("tenant", "metric_name", "series_id", "time", "start_time", "service_name", "description", "unit",
             "kind", "temporality", "is_monotonic", "point_flags", "quality_flags", "exemplar_trace_ids",
             "received_time", "source_kind", "source_id", "region")

BATCH_REF = Column("batch_ref", UINT64, "The batch id as a number (`batch_id` is its 16 hex digits).",
                   "CODEC(DoubleDelta, ZSTD(1))", since=LAYOUT_VERSION)
BATCH_ID_FULL = Column("batch_id_full", TEXT, "The batch id when it is not `batch_ref` in hex (ids made before "
                       "schema version 7); empty otherwise.", ZSTD, since=LAYOUT_VERSION)
META = Column("meta", UINT64, "Key of the point's metadata version: its `series` row has the same `meta`.",
              "CODEC(Delta(8), ZSTD(1))", since=META_VERSION)
_CODECS = {"time": "CODEC(DoubleDelta, ZSTD(1))", "received_time": "CODEC(DoubleDelta, ZSTD(1))",
           "start_time": TIME_CODEC}


@dataclass(frozen=True)
class KindTable:
    table: Table
    kinds: tuple[str, ...]


_KEY_LABELS = ("tenant", "metric_name")


def _from_points(names: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(_stored(replace(POINTS.column(n), since=LAYOUT_VERSION, codec=_CODECS.get(n, POINTS.column(n).codec)))
                 for n in names)


def _stored(col: Column) -> Column:
    if col.name in META_COLUMNS + BATCH_SIDE:
        col = replace(col, dropped=META_VERSION)
    if col.type == LABEL and col.name not in _KEY_LABELS:
        return replace(col, type=TEXT, retyped=PLAIN_TEXT_VERSION)
    return col


def _kind_table(name: str, doc: str, kinds: tuple[str, ...], own: tuple[str, ...]) -> KindTable:
    table = Table(
        name=name,
        doc=doc,
        columns=_from_points(PER_POINT[:4]) + _from_points(own) + _from_points(PER_POINT[4:])
        + (BATCH_REF, BATCH_ID_FULL, META),
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

METRIC_BATCHES = Table(
    name="metric_batches",
    doc=("Where each batch of metric points came from, once per batch (schema version 11): the points carry "
         "`batch_ref` and `batch_id_full`, and `metric_points` shows these columns on each of them."),
    columns=(
        Column("tenant", LABEL, "Owning tenant.", since=META_VERSION),
        Column("batch_ref", UINT64, "The batch id as a number, as the points carry it.", since=META_VERSION),
        Column("batch_id_full", TEXT, "The batch id when it is not `batch_ref` in hex; empty otherwise.", ZSTD,
               since=META_VERSION),
        replace(POINTS.column("received_time"), since=META_VERSION),
        replace(POINTS.column("source_kind"), since=META_VERSION),
        replace(POINTS.column("source_id"), since=META_VERSION),
        replace(POINTS.column("region"), since=META_VERSION),
    ),
    order_by="(tenant, batch_ref, batch_id_full)",
    partition_by="toDate(received_time)",
    ttl_column="received_time",
    engine="ReplacingMergeTree",
    reasons=("ReplacingMergeTree by batch: a group stored again after a crash writes its batches again, and "
             "merges keep one row each.",),
    since=META_VERSION,
)
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
BATCH_ID_SQL = "if(p.batch_id_full != '', p.batch_id_full, leftPad(lower(hex(p.batch_ref)), 16, '0'))"


def split_points(points: pa.Table, version: int | None = None) -> list[tuple[Table, pa.Table]]:
    """The rows each table stores for points in `POINTS`' shape: their batches' provenance first (from
    version 11), then each kind table's share, with the columns stored now or as of a schema version.
    Their `meta` is computed unless the points carry it (`meta_keys`)."""
    if META.name not in points.column_names:
        points = points.append_column(META.name, meta_keys(points))
    ids = pc.dictionary_encode(points.column("batch_id")).combine_chunks()
    refs, fulls = [], []
    for batch_id in ids.dictionary.to_pylist():
        ref = batch_ref(batch_id)
        refs.append(ref)
        fulls.append("" if batch_id_of(ref) == batch_id else batch_id)
    index = ids.indices.to_numpy(zero_copy_only=False)
    rows = points.append_column("batch_ref", pa.array(np.array(refs, np.uint64)[index]))
    rows = rows.append_column("batch_id_full", pa.array(fulls, pa.string()).take(ids.indices))
    shares = [(k.table, _select(k.table, part, version)) for k, part in _by_kind(rows)]
    if version is not None and version < META_VERSION:
        return shares
    first = np.full(len(ids.dictionary), len(index), np.int64)
    np.minimum.at(first, index, np.arange(len(index)))
    batches = rows.select([c.name for c in METRIC_BATCHES.sent_columns(version)]).take(first)
    return [(METRIC_BATCHES, _select(METRIC_BATCHES, batches, version))] + shares


META_SQL = ("reinterpretAsUInt64(substring(MD5(concat(description, '\\0', unit, '\\0', kind, '\\0', temporality, '\\0', "
            "if(is_monotonic, '1', '0'))), 1, 8))")


def meta_key(description: str | None, unit: str | None, kind: str | None, temporality: str | None,
             is_monotonic: bool | None) -> int:
    """The `meta` of a metadata version, as `META_SQL` computes it from stored columns: stable across
    processes and releases (Python's `hash` is neither), so a restart or a replay finds the same version."""
    text = "\0".join((description or "", unit or "", kind or "", temporality or "", "1" if is_monotonic else "0"))
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "little")


_CODE_BOUND = 1 << 62  # combined codes stay int64; past it they are renumbered densely first


def meta_keys(points: pa.Table) -> pa.Array:
    """Each point's `meta`, with a Python step per distinct metadata only: a group's points share a
    few metrics' metadata."""
    codes, bound = np.zeros(points.num_rows, np.int64), 1
    for name in META_COLUMNS:
        encoded = pc.dictionary_encode(points.column(name), null_encoding="encode").combine_chunks()
        size = len(encoded.dictionary)
        if bound * size >= _CODE_BOUND:
            codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)
            bound = int(codes.max()) + 1
        codes = codes * size + encoded.indices.to_numpy(zero_copy_only=False)
        bound *= size
    distinct = pc.dictionary_encode(pa.array(codes))
    index = distinct.indices.to_numpy()
    first = np.full(len(distinct.dictionary), len(index), np.int64)
    np.minimum.at(first, index, np.arange(len(index)))
    metadata = points.select(list(META_COLUMNS)).take(first)
    keys = [meta_key(*row) for row in zip(*(column.to_pylist() for column in metadata.columns))]
    return pa.array(np.asarray(keys, np.uint64)[index])


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


def _select(table: Table, rows: pa.Table, version: int | None) -> pa.Table:
    if version is None:
        schema = arrow_schema(table)
    else:
        schema = pa.schema([pa.field(c.name, c.type.arrow) for c in table.sent_columns(version)])
    return pa.Table.from_arrays([rows.column(f.name).cast(f.type) for f in schema], schema=schema)


# -- the SQL side: the view that gives the old rows back, and the move of old rows -------------

BY_KIND = "points_by_kind"


def by_kind_columns(version: int | None = None) -> tuple[Column, ...]:
    """Every column of any kind table as of `version` (the latest when None): those of `POINTS` in its
    order, then the batch columns and `meta`."""
    stored = {c.name for k in KIND_TABLES for c in k.table.sent_columns(version)}
    tail = tuple(c for c in (BATCH_REF, BATCH_ID_FULL, META) if c.stored_at(version))
    return tuple(c for c in POINTS.columns if c.name in stored) + tail


def create_by_kind(database: str, version: int | None = None) -> str:
    """A Merge table reading all kind tables as one; where a table lacks a column, it reads the type's
    default. Measured against a UNION ALL of the four, it halves a small query's fixed cost. Replaced
    (it holds no rows) when the kind tables' columns change."""
    columns = ", ".join(f"{ident(c.name)} {c.type.clickhouse}" for c in by_kind_columns(version))
    tables = "|".join(k.table.name for k in KIND_TABLES)
    head = "CREATE OR REPLACE TABLE" if version == META_VERSION else "CREATE TABLE IF NOT EXISTS"
    return (f"{head} {ident(database)}.{ident(BY_KIND)} ({columns}) "
            f"ENGINE = Merge({quote(database)}, '^({tables})$') "
            f"COMMENT {quote('The kind tables read as one, for the metric_points view.')}")


def _points_query(version: int) -> str:
    narrow = version >= META_VERSION
    by_series = SERIES_SIDE + (META_COLUMNS if narrow else ())
    by_batch = BATCH_SIDE if narrow else ()
    keys = ("tenant", "metric_name", "series_id") + (("meta",) if narrow else ())
    outer = []
    for c in POINTS.columns:
        if c.name == "value":
            outer.append(f"{_scalar_only(version)} AS value")
        elif c.name == "batch_id":
            outer.append(f"{BATCH_ID_SQL} AS batch_id")
        else:
            side = "s" if c.name in by_series else "b" if c.name in by_batch else "p"
            outer.append(f"{side}.{c.name} AS {c.name}")
    on = " AND ".join(f"p.{k} = s.{k}" for k in keys)
    query = (f"SELECT {', '.join(outer)} FROM {{db}}.{BY_KIND} AS p "
             f"ANY LEFT JOIN (SELECT {', '.join(keys + by_series)} FROM {{db}}.series FINAL) AS s ON {on}")
    if narrow:
        on = " AND ".join(f"p.{k} = b.{k}" for k in ("tenant", "batch_ref", "batch_id_full"))
        query += f" ANY LEFT JOIN {{db}}.{METRIC_BATCHES.name} AS b ON {on}"
    return query


def _scalar_only(version: int) -> str:
    # Only `samples` has values: the Merge table reads 0 from the others, where rows held NaN.
    if version >= META_VERSION:
        return f"if(p._table = '{KIND_TABLES[0].table.name}', p.value, nan)"
    scalar = ", ".join(f"'{k}'" for k in KIND_TABLES[0].kinds)
    return f"if(p.kind IN ({scalar}), p.value, nan)"


POINTS_VIEW = View(
    name="metric_points",
    doc=("Every metric point, one row each, as the `metric_points` table of schema versions before 7 held it: "
         "the kind tables joined to the `series` row of each point's series and metadata version."),
    query=_points_query(META_VERSION),
    since=LAYOUT_VERSION,
    revised=META_VERSION,
    old_query=_points_query(LAYOUT_VERSION),
)

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
    columns = SERIES.sent_columns(LAYOUT_VERSION)
    for name in (c.name for c in columns):
        if name in keys:
            picks.append(name)
        elif name == "seen_time":
            picks.append("max(time)")
        elif name == "updated":
            picks.append("toDateTime64(0, 9, 'UTC')")
        else:
            picks.append(f"argMax({name}, time)")
    names = ", ".join(c.name for c in columns)
    return f"INSERT INTO {db}.`series` ({names}) SELECT {', '.join(picks)} FROM {old} GROUP BY {', '.join(keys)}"


def count_statements(database: str) -> tuple[str, str]:
    """Rows in the old table, and in the kind tables: equal once a move is complete."""
    db = ident(database)
    new = " + ".join(f"(SELECT count() FROM {db}.{ident(k.table.name)})" for k in KIND_TABLES)
    return f"SELECT count() FROM {db}.{ident(OLD_POINTS)}", f"SELECT {new}"


def meta_statements(database: str) -> list[str]:
    """Statements of version 11 that give each stored point its `meta`, each version a `series` row and
    each batch a `metric_batches` row, before the kind tables drop those columns. Each may run again after a crash: a point
    keyed once is skipped, a version row written twice is folded by the ReplacingMergeTree."""
    db = ident(database)
    statements = [f"ALTER TABLE {db}.{ident(k.table.name)} UPDATE meta = {META_SQL} WHERE meta = 0 "
                  "SETTINGS mutations_sync = 1" for k in KIND_TABLES]
    versions = " UNION ALL ".join(
        f"SELECT tenant, metric_name, series_id, meta, {', '.join(META_COLUMNS)}, time FROM {db}.{ident(k.table.name)}"
        for k in KIND_TABLES)
    meta = ", ".join(f"any({c}) AS {c}" for c in META_COLUMNS)
    names = [c.name for c in SERIES.columns]
    picks = ", ".join(f"v.{n}" if n in META_COLUMNS + ("tenant", "metric_name", "series_id", "meta", "seen_time")
                      else f"s.{n}" for n in names)
    # The old rows (meta 0) give each version its labels; they go once every version has a row.
    statements.append(
        f"INSERT INTO {db}.`series` ({', '.join(names)}) SELECT {picks} FROM "
        f"(SELECT tenant, metric_name, series_id, meta, {meta}, max(time) AS seen_time FROM ({versions}) "
        "GROUP BY tenant, metric_name, series_id, meta) AS v "
        f"LEFT JOIN (SELECT * FROM {db}.`series` FINAL WHERE meta = 0) AS s "
        "ON v.tenant = s.tenant AND v.metric_name = s.metric_name AND v.series_id = s.series_id")
    statements.append(f"ALTER TABLE {db}.`series` DELETE WHERE meta = 0 SETTINGS mutations_sync = 1")
    provenance = " UNION ALL ".join(
        f"SELECT tenant, batch_ref, batch_id_full, {', '.join(BATCH_SIDE)} FROM {db}.{ident(k.table.name)}"
        for k in KIND_TABLES)
    names = [c.name for c in METRIC_BATCHES.columns]
    picks = ", ".join(n if n in ("tenant", "batch_ref", "batch_id_full") else f"any({n})" for n in names)
    statements.append(f"INSERT INTO {db}.{ident(METRIC_BATCHES.name)} ({', '.join(names)}) SELECT {picks} "
                      f"FROM ({provenance}) GROUP BY tenant, batch_ref, batch_id_full")
    return statements
