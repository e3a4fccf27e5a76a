"""The series catalog: which series (and which metadata of each) a regional store already describes.

Each group of points inserted into `metric_points` first writes a `series`
row for every series the catalog does not know, or knows with other metadata
(a description or unit that arrived later, a kind that changed). A version is
keyed by `meta` (`schema.layout.meta_keys`), which every point carries. The catalog
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

_COPIED = tuple(c.name for c in SERIES.columns if c.name not in ("seen_time", "updated"))


class SeriesCatalog:
    def __init__(self, max_series: int = 1_000_000) -> None:
        self.max_series = max_series
        # series id -> `meta` of the version last written: about 150 bytes a series.
        self.known: dict[int, int] = {}

    def prime(self, rows: list[tuple]) -> None:
        """(series_id, meta) rows, each series' newest version, as the store holds them."""
        for series_id, meta in rows[: self.max_series]:
            self.known[int(series_id)] = int(meta)

    def changes(self, points: pa.Table) -> tuple[pa.Table, dict[int, int]] | None:
        """`series` rows for the versions (series and `meta`) in `points` the store may not describe
        yet, and what to remember once they are stored; None when there are none."""
        last = _last_of_each(points.column("series_id"), points.column("meta"))
        ids = points.column("series_id").take(last).to_numpy()
        metas = points.column("meta").take(last).to_numpy()
        known = self.known
        wanted = np.fromiter((known.get(sid) != meta for sid, meta in zip(ids.tolist(), metas.tolist())),
                             bool, len(last))
        if not wanted.any():
            return None
        chosen = np.sort(last[wanted])  # row order: a series' last version is remembered last
        fresh = dict(zip(points.column("series_id").take(chosen).to_pylist(),
                         points.column("meta").take(chosen).to_pylist()))
        rows = points.take(chosen).select(list(_COPIED))
        now = time.time_ns()
        rows = rows.append_column("seen_time", pc.cast(points.column("time").take(chosen), pa.int64())) \
                   .append_column("updated", pa.array(np.full(len(chosen), now, np.int64)))
        return conform(SERIES, rows), fresh

    def remember(self, fresh: dict[int, int]) -> None:
        if len(self.known) + len(fresh) > self.max_series:
            self.known.clear()
        self.known.update(fresh)


def _last_of_each(ids: pa.ChunkedArray, metas: pa.ChunkedArray) -> np.ndarray:
    """The row of each (series, meta)'s last occurrence: within a group, a version's newest point
    describes it. Hash-based, since a sort of a 400k-row group cost more than the rest."""
    by_id = pc.dictionary_encode(ids).combine_chunks()
    by_meta = pc.dictionary_encode(metas).combine_chunks()
    pair = by_id.indices.to_numpy().astype(np.int64) * len(by_meta.dictionary) + by_meta.indices.to_numpy()
    index = pc.dictionary_encode(pa.array(pair)).indices.to_numpy()
    last = np.zeros(int(index.max()) + 1 if len(index) else 0, np.int64)
    np.maximum.at(last, index, np.arange(len(index)))  # `last[index] = ...` leaves the order of repeats open
    return last


def prime_query(database: str) -> str:
    return f"SELECT series_id, argMax(meta, updated) FROM `{database}`.`series` GROUP BY series_id"
