"""The series catalog: which series (and which metadata of each) a regional store already describes.

Each group of points inserted into `metric_points` first writes a `series`
row for every series the catalog does not know, or knows with other metadata
(a description or unit that arrived later, a kind that changed). The catalog
is primed from the store when it opens, so a restart writes nothing again;
it is bounded (`max_series`, 1M), and forgetting only costs a repeated row,
which the ReplacingMergeTree folds. The series insert carries a token derived from
the group's, so a replayed group writes it once.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.schema import SERIES, conform

METADATA = ("metric_name", "description", "unit", "kind", "temporality", "is_monotonic")
_COPIED = tuple(c.name for c in SERIES.columns if c.name not in ("seen_time", "updated"))


class SeriesCatalog:
    def __init__(self, max_series: int = 1_000_000) -> None:
        self.max_series = max_series
        # series id -> hash of its metadata as last written: about 150 bytes a series, where keeping
        # the metadata itself (six fresh strings per series) cost several times that.
        self.known: dict[int, int] = {}

    def prime(self, rows: list[tuple]) -> None:
        """(series_id, *METADATA) rows, the newest per series, as the store holds them."""
        for series_id, *meta in rows[: self.max_series]:
            self.known[int(series_id)] = hash(tuple(meta))

    def changes(self, points: pa.Table) -> tuple[pa.Table, dict[int, int]] | None:
        """`series` rows for the series of `points` the store does not describe yet (or describes
        otherwise), and what to remember once they are stored; None when there are none."""
        unique, last = _last_of_each(points.column("series_id"))
        digests = _metadata_digests(points.select(list(METADATA)).take(last))
        known = self.known
        fresh = {sid: digest for sid, digest in zip(unique.tolist(), digests.tolist()) if known.get(sid) != digest}
        if not fresh:
            return None
        chosen = last[np.isin(unique, np.fromiter(fresh, np.uint64, len(fresh)))]
        rows = points.take(chosen).select(list(_COPIED))
        now = time.time_ns()
        rows = rows.append_column("seen_time", pc.cast(points.column("time").take(chosen), pa.int64())) \
                   .append_column("updated", pa.array(np.full(len(chosen), now, np.int64)))
        return conform(SERIES, rows), fresh

    def forget(self, series_ids: list[int]) -> None:
        for series_id in series_ids:
            self.known.pop(series_id, None)

    def remember(self, fresh: dict[int, int]) -> None:
        if len(self.known) + len(fresh) > self.max_series:
            self.known.clear()
        self.known.update(fresh)


def _last_of_each(ids: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct ids, the row of each one's last occurrence): within a group, the newest
    metadata wins. Hash-based, since a sort of a 400k-row group cost more than the rest."""
    encoded = pc.dictionary_encode(ids).combine_chunks()
    index = encoded.indices.to_numpy()
    last = np.zeros(len(encoded.dictionary), np.int64)
    np.maximum.at(last, index, np.arange(len(index)))  # `last[index] = ...` leaves the order of repeats open
    return encoded.dictionary.to_numpy(), last


_CODE_BOUND = 1 << 62  # combined codes stay int64; past it they are renumbered densely first


def _metadata_digests(meta: pa.Table) -> np.ndarray:
    """`hash(tuple(row))` of each row, as `prime` computes it, with a Python step per
    distinct combination only: a group's series share a few metrics' metadata."""
    codes, bound = np.zeros(meta.num_rows, np.int64), 1
    for column in meta.columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode").combine_chunks()
        size = len(encoded.dictionary)
        if bound * size >= _CODE_BOUND:
            codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)
            bound = int(codes.max()) + 1
        codes = codes * size + encoded.indices.to_numpy()
        bound *= size
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    rows = zip(*(column.to_pylist() for column in meta.take(first).columns))
    return np.asarray([hash(row) for row in rows], np.int64)[inverse]


def prime_query(database: str) -> str:
    columns = ", ".join(("series_id",) + METADATA)
    return f"SELECT {columns} FROM `{database}`.`series` FINAL"
