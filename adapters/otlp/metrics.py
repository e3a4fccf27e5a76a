"""OTLP metrics to rows of `metric_points`.

The walk over the request appends plain values to per-kind column lists and
never keeps a Python object per point; everything after the walk (range
checks, flags, filtering) runs on whole columns.

Refused (counted in partial_success): points whose time is 0 or outside the
accept window, points with no value and no "no recorded value" flag, points or
metrics whose text is not valid UTF-8, histograms whose bucket counts do not
match their bounds. Kept with a quality flag: non-finite values
(`non_finite`) and points flagged "no recorded value" (`no_recorded_value`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import AdaptResult, Draft, Outcome, SeriesParts
from telemetry_gateway.adapters.columns import Origins, index_masks, time_array, times
from telemetry_gateway.adapters.otlp import wire
from telemetry_gateway.adapters.attributes import AttributeSets, InvalidAttributes
from telemetry_gateway.adapters.series import text_hash
from telemetry_gateway.adapters.units import normalize_unit
from telemetry_gateway.schema import POINTS, arrow_schema

TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
NO_RECORDED_VALUE = 1
NAN = math.nan

decode_request = wire.MetricsRequest.FromString
decode_shallow = wire.MetricsRequestShallow.FromString

try:  # the compiled walker (adapters/otlp/native); without it, gauges and sums take the Python walk
    from telemetry_gateway_native import number_points as native_number_points
except ImportError:
    native_number_points = None
log = logging.getLogger(__name__)
mismatches = 0  # requests the compiled walker read differently, adapted in Python instead


@dataclass(frozen=True)
class Received:
    """A decoded request and the bytes it came from. With `walked` (the compiled walker's columns),
    `message` is the shallow parse: its gauge and sum points are their encodings."""

    message: object
    raw: bytes
    walked: tuple | None = None


def decode_received(payload: bytes) -> Received:
    """Parse a request, refusing what the full parse refuses (DecodeError). Where the walker reads
    every gauge and sum point, they stay encoded in the message; otherwise the full parse decides."""
    raw = bytes(payload)
    if native_number_points is not None:
        message = decode_shallow(raw)  # every field but those points, checked as the full parse checks it
        try:
            return Received(message, raw, native_number_points(raw))
        except ValueError:  # a group, or points the walker does not read
            pass
    return Received(decode_request(raw), raw)


def adapt_received(received: Received, sets: AttributeSets) -> AdaptResult:
    if received.walked is None:
        return _adapt(received.message, sets, None)
    numbers = _NativeNumbers(sets, received.raw, received.walked)
    return _adapt_native(received.message, sets, numbers, lambda: decode_request(received.raw))


class _Metas:
    """Per-metric fields; points refer to a metric by index."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {
            "metric_name": [], "description": [], "unit": [], "kind": [], "temporality": [], "is_monotonic": [],
        }

        self.name_hashes: list[int] = []

    def add(self, name: str, description: str, unit: str, kind: str, temporality: str, monotonic: bool) -> int:
        for col, value in zip(self.cols.values(), (name, description, unit, kind, temporality, monotonic)):
            col.append(value)
        self.name_hashes.append(text_hash(name))
        return len(self.name_hashes) - 1

    def columns(self, index: pa.Array) -> dict[str, pa.Array]:
        return {name: pa.array(values, POINTS_SCHEMA.field(name).type).take(index) for name, values in self.cols.items()}


class _Points:
    """Columns every kind has; subclasses add their own and their walk."""

    def __init__(self, sets: AttributeSets) -> None:
        self.sets = sets
        self.time: list[int] = []
        self.start: list[int] = []
        self.flags: list[int] = []
        self.attr_ids: list[int] = []
        self.meta: list[int] = []
        self.origin: list[int] = []
        self.bad: dict[int, tuple[str, str]] = {}  # row -> (code, reason)

    def __len__(self) -> int:
        return len(self.time)

    def _attributes(self, raw: tuple[bytes, ...]) -> int:
        try:
            return self.sets.id_of(raw)
        except InvalidAttributes as exc:
            self.bad[len(self.attr_ids)] = ("invalid_attributes", f"attributes: {exc}")
            return 0

    def _common(self, dp) -> None:
        self.time.append(dp.time_unix_nano)
        self.start.append(dp.start_time_unix_nano)
        self.flags.append(dp.flags)
        self.attr_ids.append(self._attributes(tuple(dp.attributes)))

    def add(self, points, meta: int, origin: int, index: int) -> None:
        before = len(self.time)
        self.walk(points)
        added = len(self.time) - before
        self.meta.extend([meta] * added)
        self.origin.extend([origin] * added)

    def walk(self, points) -> None:
        raise NotImplementedError

    def kind_columns(self) -> dict[str, pa.Array]:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once the request's metrics are all added."""

    def checks(self) -> list[tuple[str, str, np.ndarray]]:
        """Refusals particular to this kind: (code, reason, mask)."""
        return []


class _Numbers(_Points):
    def __init__(self, sets: AttributeSets) -> None:
        super().__init__(sets)
        self.value: list[float] = []
        self.missing: list[int] = []

    def walk(self, points) -> None:
        # The hottest loop of the gateway: locals and bound methods on purpose.
        t_app, s_app, f_app, v_app = self.time.append, self.start.append, self.flags.append, self.value.append
        id_app, known = self.attr_ids.append, self.sets.ids.get
        for dp in points:
            t_app(dp.time_unix_nano)
            s_app(dp.start_time_unix_nano)
            f_app(dp.flags)
            which = dp.WhichOneof("value")
            if which == "as_double":
                v_app(dp.as_double)
            elif which == "as_int":
                v_app(float(dp.as_int))
            else:
                v_app(NAN)
                self.missing.append(len(self.value) - 1)
            raw = tuple(dp.attributes)
            set_id = known(raw)
            id_app(set_id if set_id is not None else self._attributes(raw))

    def kind_columns(self) -> dict[str, pa.Array]:
        return {"value": pa.array(self.value, pa.float64())}

    def checks(self):
        no_value = (np.asarray(self.flags, np.uint32) & NO_RECORDED_VALUE) != 0
        missing = np.zeros(len(self), bool)
        missing[self.missing] = True
        return [("invalid_value", "data point has no value", missing & ~no_value)]


class NativeMismatch(Exception):
    """The compiled walker and the parsed request disagree on the request's metrics."""


class _NativeNumbers(_Numbers):
    """Gauge and sum points read by the compiled walker, kept as arrays; `finish` gives them the
    columns `_Numbers` builds point by point. Attribute sets are looked up by the walker's keyed
    hash (`AttributeSets.hashed`); a set met for the first time is registered from its raw bytes,
    exactly as the Python walk registers it."""

    def __init__(self, sets: AttributeSets, raw: bytes, columns: tuple[bytes, ...]) -> None:
        super().__init__(sets)
        self.raw = raw
        counts, time, start, flags, value, has_value, hashes, kv_first, kv_count, kv_offset, kv_len = columns
        self.counts = np.frombuffer(counts, np.uint32)
        self.starts = np.concatenate(([0], np.cumsum(self.counts, dtype=np.int64)))
        self.all_time, self.all_start = np.frombuffer(time, np.uint64), np.frombuffer(start, np.uint64)
        self.all_flags, self.all_value = np.frombuffer(flags, np.uint32), np.frombuffer(value, np.float64)
        self.all_has_value = np.frombuffer(has_value, np.uint8)
        self.hashes = np.frombuffer(hashes, np.dtype((np.void, 16)))
        self.pairs = np.frombuffer(hashes, np.uint64).reshape(-1, 2)
        self.kv_first, self.kv_count = np.frombuffer(kv_first, np.uint32), np.frombuffer(kv_count, np.uint32)
        self.kv_offset, self.kv_len = np.frombuffer(kv_offset, np.uint32), np.frombuffer(kv_len, np.uint32)
        self.taken: list[tuple[int, int, int, int]] = []  # (first point, count, meta, origin) per metric

    def add(self, points, meta: int, origin: int, index: int) -> None:
        count = len(points)
        if index >= len(self.counts) or self.counts[index] != count:
            found = int(self.counts[index]) if index < len(self.counts) else "no"
            raise NativeMismatch(f"metric {index} has {count} gauge or sum points, the walker read {found}")
        if count:
            self.taken.append((int(self.starts[index]), count, meta, origin))

    def check_all_seen(self, metrics: int) -> None:
        if metrics != len(self.counts):
            raise NativeMismatch(f"the request has {metrics} metrics, the walker read {len(self.counts)}")

    def finish(self) -> None:
        if not self.taken:
            return
        firsts, counts, metas, origins = (np.asarray(c, np.int64) for c in zip(*self.taken))
        placed = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rows = np.arange(int(counts.sum())) + np.repeat(firsts - placed, counts)
        self.time, self.start = self.all_time[rows], self.all_start[rows]
        self.flags, self.value = self.all_flags[rows], self.all_value[rows]
        self.missing = np.flatnonzero(self.all_has_value[rows] == 0)
        self.meta, self.origin = np.repeat(metas, counts), np.repeat(origins, counts)
        self.attr_ids = self._set_ids(rows)

    def _set_ids(self, rows: np.ndarray) -> np.ndarray:
        known = self.sets.hashed
        if not isinstance(known, dict):  # the compiled index: every set known is the common case
            ids, unknown = known.lookup(self.hashes[rows].tobytes())
            if not unknown:
                return np.frombuffer(ids, np.int64)
        pairs = self.pairs[rows]
        _, first, inverse = np.unique(pairs[:, 0], return_index=True, return_inverse=True)
        if not np.array_equal(pairs[first[inverse], 1], pairs[:, 1]):  # two sets share one half: compare both
            _, first, inverse = np.unique(self.hashes[rows], return_index=True, return_inverse=True)
        keys = self.hashes[rows[first]].tolist()
        ids = [known.get(k) for k in keys]
        inverse = inverse.ravel()
        if None in ids:
            refused: dict[int, str] = {}
            for j in np.argsort(first, kind="stable").tolist():  # new sets get ids in the order points bring them
                if ids[j] is None:
                    ids[j] = self._register(keys[j], int(rows[first[j]]), j, refused)
            if refused:
                for row in np.flatnonzero(np.isin(inverse, list(refused))).tolist():  # in row order, as the Python walk
                    self.bad[row] = ("invalid_attributes", refused[int(inverse[row])])
        return np.asarray(ids, np.int64)[inverse]

    def _register(self, key: bytes, point: int, j: int, refused: dict[int, str]) -> int:
        first, count = int(self.kv_first[point]), int(self.kv_count[point])
        spans = zip(self.kv_offset[first:first + count].tolist(), self.kv_len[first:first + count].tolist())
        raw = tuple(self.raw[at:at + n] for at, n in spans)
        try:
            set_id = self.sets.id_of(raw)
        except InvalidAttributes as exc:
            refused[j] = f"attributes: {exc}"
            return 0
        self.sets.hashed[key] = set_id
        return set_id


def _increasing(bounds: list[float]) -> bool:
    return all(math.isfinite(b) for b in bounds) and all(a < b for a, b in zip(bounds, bounds[1:]))


def _opt(dp, name: str):
    return getattr(dp, name) if dp.HasField(name) else None


class _Histograms(_Points):
    def __init__(self, sets: AttributeSets) -> None:
        super().__init__(sets)
        self.cols: dict[str, list] = {k: [] for k in ("count", "sum", "min", "max", "bucket_bounds", "bucket_counts")}

    def walk(self, points) -> None:
        c = self.cols
        for dp in points:
            self._common(dp)
            c["count"].append(dp.count)
            c["sum"].append(_opt(dp, "sum"))
            c["min"].append(_opt(dp, "min"))
            c["max"].append(_opt(dp, "max"))
            c["bucket_bounds"].append(list(dp.explicit_bounds))
            c["bucket_counts"].append(list(dp.bucket_counts))

    def kind_columns(self) -> dict[str, pa.Array]:
        return {name: pa.array(values, POINTS_SCHEMA.field(name).type) for name, values in self.cols.items()}

    def checks(self):
        c = self.cols
        bounds = np.fromiter((len(b) for b in c["bucket_bounds"]), np.int64, len(self))
        counts = np.fromiter((len(b) for b in c["bucket_counts"]), np.int64, len(self))
        unordered = np.fromiter((not _increasing(b) for b in c["bucket_bounds"]), bool, len(self))
        total = np.fromiter((sum(b) for b in c["bucket_counts"]), np.float64, len(self))
        return [
            ("invalid_histogram", "bucket_counts length is not len(explicit_bounds) + 1", (counts != 0) & (counts != bounds + 1)),
            ("invalid_histogram", "explicit_bounds are not finite and strictly increasing", unordered),
            ("invalid_histogram", "histogram count is not the sum of its bucket_counts",
             (counts != 0) & (total != np.asarray(c["count"], np.float64))),
        ]


class _ExpHistograms(_Points):
    NAMES = (
        "count", "sum", "min", "max", "exp_scale", "exp_zero_count", "exp_zero_threshold",
        "exp_positive_offset", "exp_positive_counts", "exp_negative_offset", "exp_negative_counts",
    )

    def __init__(self, sets: AttributeSets) -> None:
        super().__init__(sets)
        self.cols: dict[str, list] = {k: [] for k in self.NAMES}

    def walk(self, points) -> None:
        c = self.cols
        for dp in points:
            self._common(dp)
            row = (
                dp.count, _opt(dp, "sum"), _opt(dp, "min"), _opt(dp, "max"), dp.scale, dp.zero_count,
                dp.zero_threshold, dp.positive.offset, list(dp.positive.bucket_counts),
                dp.negative.offset, list(dp.negative.bucket_counts),
            )
            for name, value in zip(self.NAMES, row):
                c[name].append(value)

    def kind_columns(self) -> dict[str, pa.Array]:
        return {name: pa.array(values, POINTS_SCHEMA.field(name).type) for name, values in self.cols.items()}

    def checks(self):
        c = self.cols
        scale = np.asarray(c["exp_scale"], np.int64)
        buckets = np.fromiter((sum(p) + sum(n) for p, n in zip(c["exp_positive_counts"], c["exp_negative_counts"])),
                              np.float64, len(self))
        return [
            ("invalid_histogram", "exponential histogram scale is outside -10..20", (scale < -10) | (scale > 20)),
            ("invalid_histogram", "exponential histogram count is not zero_count plus its bucket counts",
             np.asarray(c["count"], np.float64) != buckets + np.asarray(c["exp_zero_count"], np.float64)),
        ]


class _Summaries(_Points):
    def __init__(self, sets: AttributeSets) -> None:
        super().__init__(sets)
        self.cols: dict[str, list] = {k: [] for k in ("count", "sum", "quantiles", "quantile_values")}

    def walk(self, points) -> None:
        c = self.cols
        for dp in points:
            self._common(dp)
            c["count"].append(dp.count)
            c["sum"].append(dp.sum)
            c["quantiles"].append([q.quantile for q in dp.quantile_values])
            c["quantile_values"].append([q.value for q in dp.quantile_values])

    def kind_columns(self) -> dict[str, pa.Array]:
        return {name: pa.array(values, POINTS_SCHEMA.field(name).type) for name, values in self.cols.items()}

    def checks(self):
        bad_quantile = np.fromiter((not all(0.0 <= q <= 1.0 for q in qs) for qs in self.cols["quantiles"]), bool, len(self))
        return [("invalid_histogram", "summary quantile is outside 0..1", bad_quantile)]


POINTS_SCHEMA = arrow_schema(POINTS)
_BUILDERS = {
    "gauge": _Numbers, "sum": _Numbers, "histogram": _Histograms,
    "exponential_histogram": _ExpHistograms, "summary": _Summaries,
}


def _draft(points: _Points, metas: _Metas, origins: Origins) -> Draft:
    n = len(points)
    meta_idx = np.asarray(points.meta, np.int32)
    rejects = points.checks() + index_masks(n, points.bad)
    if isinstance(points, _Numbers):
        monotonic = np.asarray(metas.cols["is_monotonic"], bool)[meta_idx] if n else np.zeros(0, bool)
        rejects.append(("invalid_value", "monotonic sum value is negative",
                        monotonic & (np.asarray(points.value, np.float64) < 0)))
    attributes, attr_hashes = points.sets.map_column(points.attr_ids)
    origin_cols, resource_hashes = origins.columns(np.asarray(points.origin, np.int32))
    columns: dict[str, pa.Array] = {
        "start_time": time_array(times(points.start)),
        "point_flags": pa.array(points.flags, pa.uint32()),
        "attributes": attributes,
        **metas.columns(pa.array(meta_idx)),
        **origin_cols,
        **points.kind_columns(),
    }
    names = np.asarray(metas.name_hashes, np.uint64)[meta_idx]
    return Draft(POINTS, columns, times(points.time), "time_unix_nano", rejects,
                 series=SeriesParts(names, resource_hashes, attr_hashes))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")


def _point_count(metric) -> int:
    which = metric.WhichOneof("data")
    return len(getattr(metric, which).data_points) if which else 0


def _scope_points(sm) -> int:
    return sum(_point_count(m) for m in sm.metrics)


def metrics_to_arrow(request, sets: AttributeSets, raw: bytes | None = None) -> AdaptResult:
    """Map a (lenient) ExportMetricsServiceRequest to `metric_points` drafts, one per kind.

    With `raw`, the bytes the request was parsed from, gauge and sum points come from the
    compiled walker when it is installed; the result is the same (the tests compare them).
    """
    numbers = _native_numbers(sets, raw)
    if numbers is None:
        return _adapt(request, sets, None)
    return _adapt_native(request, sets, numbers, lambda: request)


def _adapt_native(message, sets: AttributeSets, numbers: _NativeNumbers, full) -> AdaptResult:
    """`_adapt` with the walker's points; where the walker and `message` disagree, the Python walk
    over `full()`, the fully parsed request."""
    try:
        return _adapt(message, sets, numbers)
    except NativeMismatch as exc:
        global mismatches
        mismatches += 1
        if mismatches % 1000 == 1:  # a sender repeating such a request must not flood the log
            log.warning("the compiled OTLP walker disagreed with the parsed request (%s; %d so far); adapted in "
                        "Python", exc, mismatches)
        return _adapt(full(), sets, None)


def _native_numbers(sets: AttributeSets, raw: bytes | None) -> _NativeNumbers | None:
    if raw is None or native_number_points is None:
        return None
    try:
        return _NativeNumbers(sets, raw, native_number_points(raw))
    except ValueError:  # bytes the parser took but the walker does not read (a group): the Python walk does
        return None


def _adapt(request, sets: AttributeSets, numbers: _NativeNumbers | None) -> AdaptResult:
    sets.begin()
    outcome = Outcome()
    origins, metas = Origins(sets), _Metas()
    builders = {kind: cls(sets) for kind, cls in _BUILDERS.items() if kind != "sum"}
    if numbers is not None:
        builders["gauge"] = numbers
    builders["sum"] = builders["gauge"]
    index = 0  # the metric's place in the request, counting every metric: the compiled walker's numbering
    for rm in request.resource_metrics:
        try:
            resource = sets.id_of(tuple(rm.resource.attributes))
        except InvalidAttributes as exc:
            outcome.reject("invalid_attributes", f"resource attributes: {exc}", sum(_scope_points(sm) for sm in rm.scope_metrics))
            index += sum(len(sm.metrics) for sm in rm.scope_metrics)
            continue
        for sm in rm.scope_metrics:
            try:
                origin = origins.add(resource, _text(sm.scope.name), _text(sm.scope.version))
            except UnicodeDecodeError:
                outcome.reject("invalid_utf8", "scope name or version is not valid UTF-8", _scope_points(sm))
                index += len(sm.metrics)
                continue
            for metric in sm.metrics:
                _add_metric(metric, index, origin, metas, builders, outcome)
                index += 1
    if numbers is not None:
        numbers.check_all_seen(index)
    kinds = [b for k, b in builders.items() if k != "sum"]
    for builder in kinds:
        builder.finish()
    drafts = [_draft(b, metas, origins) for b in kinds if len(b)]
    return AdaptResult(drafts, outcome)


def _add_metric(metric, index: int, origin: int, metas: _Metas, builders: dict[str, _Points], outcome: Outcome) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    try:
        name, description, unit = _text(metric.name), _text(metric.description), _text(metric.unit)
    except UnicodeDecodeError:
        outcome.reject("invalid_utf8", "metric name, description or unit is not valid UTF-8", len(data.data_points))
        return
    if not name:
        outcome.reject("invalid_name", "metric name is empty", len(data.data_points))
        return
    temporality = TEMPORALITY.get(getattr(data, "aggregation_temporality", 0), "unspecified")
    monotonic = bool(getattr(data, "is_monotonic", False))
    meta = metas.add(builders[kind].sets.names.metric(name), description, normalize_unit(unit), kind, temporality, monotonic)
    builders[kind].add(data.data_points, meta, origin, index)
