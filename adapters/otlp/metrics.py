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

import math

import numpy as np
import pyarrow as pa

from telemetry_gateway.adapters.base import AdaptResult, IngestContext, Outcome
from telemetry_gateway.adapters.columns import (
    Origins,
    apply_rejections,
    flags_column,
    index_masks,
    provenance_columns,
    time_array,
    times,
    window_masks,
)
from telemetry_gateway.adapters.otlp import wire
from telemetry_gateway.adapters.otlp.attributes import AttributeSets, InvalidAttributes
from telemetry_gateway.adapters.series import series_ids, text_hash
from telemetry_gateway.adapters.units import normalize_unit
from telemetry_gateway.schema import POINTS, arrow_schema

TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
NO_RECORDED_VALUE = 1
NAN = math.nan

decode_request = wire.MetricsRequest.FromString


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
        self.bad: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.time)

    def _attributes(self, raw: tuple[bytes, ...]) -> int:
        try:
            return self.sets.id_of(raw)
        except InvalidAttributes as exc:
            self.bad[len(self.attr_ids)] = f"attributes: {exc}"
            return 0

    def _common(self, dp) -> None:
        self.time.append(dp.time_unix_nano)
        self.start.append(dp.start_time_unix_nano)
        self.flags.append(dp.flags)
        self.attr_ids.append(self._attributes(tuple(dp.attributes)))

    def add(self, points, meta: int, origin: int) -> None:
        before = len(self.time)
        self.walk(points)
        added = len(self.time) - before
        self.meta.extend([meta] * added)
        self.origin.extend([origin] * added)

    def walk(self, points) -> None:
        raise NotImplementedError

    def kind_columns(self) -> dict[str, pa.Array]:
        raise NotImplementedError

    def checks(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(rejection masks, flag masks) particular to this kind."""
        return {}, {}


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
        n = len(self)
        flags = np.asarray(self.flags, np.uint32)
        no_value = (flags & NO_RECORDED_VALUE) != 0
        missing = np.zeros(n, bool)
        missing[self.missing] = True
        value = np.asarray(self.value, np.float64)
        return (
            {"data point has no value": missing & ~no_value},
            {"no_recorded_value": no_value, "non_finite": ~np.isfinite(value) & ~missing},
        )


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
        sums = np.asarray([s if s is not None else 0.0 for s in c["sum"]], np.float64)
        unordered = np.fromiter((not _increasing(b) for b in c["bucket_bounds"]), bool, len(self))
        total = np.fromiter((sum(b) for b in c["bucket_counts"]), np.float64, len(self))
        return (
            {
                "bucket_counts length is not len(explicit_bounds) + 1": (counts != 0) & (counts != bounds + 1),
                "explicit_bounds are not finite and strictly increasing": unordered,
                "histogram count is not the sum of its bucket_counts": (counts != 0) & (total != np.asarray(c["count"], np.float64)),
            },
            {"non_finite": ~np.isfinite(sums)},
        )


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
        sums = np.asarray([s if s is not None else 0.0 for s in c["sum"]], np.float64)
        return (
            {
                "exponential histogram scale is outside -10..20": (scale < -10) | (scale > 20),
                "exponential histogram count is not zero_count plus its bucket counts":
                    np.asarray(c["count"], np.float64) != buckets + np.asarray(c["exp_zero_count"], np.float64),
            },
            {"non_finite": ~np.isfinite(sums)},
        )


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
        return (
            {"summary quantile is outside 0..1": bad_quantile},
            {"non_finite": ~np.isfinite(np.asarray(self.cols["sum"], np.float64))},
        )


POINTS_SCHEMA = arrow_schema(POINTS)
_BUILDERS = {
    "gauge": _Numbers, "sum": _Numbers, "histogram": _Histograms,
    "exponential_histogram": _ExpHistograms, "summary": _Summaries,
}


def _default(field: pa.Field, n: int) -> pa.Array:
    """The column a kind does not use: NULL, NaN for value, empty lists, zeros."""
    if field.nullable:
        return pa.nulls(n, field.type)
    if pa.types.is_list(field.type):
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], field.type.value_type))
    if field.name == "value":
        return pa.array(np.full(n, NAN))
    return pa.array(np.zeros(n, field.type.to_pandas_dtype()), field.type)


def _finish(points: _Points, metas: _Metas, origins: Origins, ctx: IngestContext, outcome: Outcome) -> pa.Table:
    n = len(points)
    event = times(points.time)
    rejects, flags = points.checks()
    masks = window_masks(event, ctx.window, ctx.received_ns, "time_unix_nano")
    masks.update(rejects)
    masks.update(index_masks(n, points.bad))
    meta_idx = np.asarray(points.meta, np.int32)
    if isinstance(points, _Numbers):
        monotonic = np.asarray(metas.cols["is_monotonic"], bool)[meta_idx] if n else np.zeros(0, bool)
        masks["monotonic sum value is negative"] = monotonic & (np.asarray(points.value, np.float64) < 0)
    keep = apply_rejections(n, masks, outcome)
    origin_idx = np.asarray(points.origin, np.int32)
    attributes, attr_hashes = points.sets.map_column(points.attr_ids)
    origin_cols, resource_hashes = origins.columns(origin_idx)
    names = np.asarray(metas.name_hashes, np.uint64)[meta_idx]
    cols: dict[str, pa.Array] = {
        "time": time_array(event),
        "start_time": time_array(times(points.start)),
        "point_flags": pa.array(points.flags, pa.uint32()),
        "attributes": attributes,
        "series_id": pa.array(series_ids(ctx.tenant, names, resource_hashes, attr_hashes)),
        "quality_flags": flags_column(n, flags),
        **metas.columns(pa.array(meta_idx)),
        **origin_cols,
        **provenance_columns(ctx, n),
        **points.kind_columns(),
    }
    arrays = [cols[f.name] if f.name in cols else _default(f, n) for f in POINTS_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=POINTS_SCHEMA)
    for name, mask in flags.items():
        outcome.warn(name, int((mask & keep).sum()))
    return table if keep.all() else table.filter(pa.array(keep))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")


def _point_count(metric) -> int:
    which = metric.WhichOneof("data")
    return len(getattr(metric, which).data_points) if which else 0


def _scope_points(sm) -> int:
    return sum(_point_count(m) for m in sm.metrics)


def metrics_to_arrow(request, ctx: IngestContext, sets: AttributeSets) -> AdaptResult:
    """Map a (lenient) ExportMetricsServiceRequest to one `metric_points` table."""
    sets.begin()
    outcome = Outcome()
    origins, metas = Origins(sets), _Metas()
    builders = {kind: cls(sets) for kind, cls in _BUILDERS.items() if kind != "sum"}
    builders["sum"] = builders["gauge"]
    for rm in request.resource_metrics:
        try:
            resource = sets.id_of(tuple(rm.resource.attributes))
        except InvalidAttributes as exc:
            outcome.reject(f"resource attributes: {exc}", sum(_scope_points(sm) for sm in rm.scope_metrics))
            continue
        for sm in rm.scope_metrics:
            try:
                origin = origins.add(resource, _text(sm.scope.name), _text(sm.scope.version))
            except UnicodeDecodeError:
                outcome.reject("scope name or version is not valid UTF-8", _scope_points(sm))
                continue
            for metric in sm.metrics:
                _add_metric(metric, origin, metas, builders, outcome)
    tables = [_finish(b, metas, origins, ctx, outcome) for k, b in builders.items() if k != "sum" and len(b)]
    table = pa.concat_tables(tables) if tables else POINTS_SCHEMA.empty_table()
    return AdaptResult(table, outcome)


def _add_metric(metric, origin: int, metas: _Metas, builders: dict[str, _Points], outcome: Outcome) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    try:
        name, description, unit = _text(metric.name), _text(metric.description), _text(metric.unit)
    except UnicodeDecodeError:
        outcome.reject("metric name, description or unit is not valid UTF-8", len(data.data_points))
        return
    if not name:
        outcome.reject("metric name is empty", len(data.data_points))
        return
    temporality = TEMPORALITY.get(getattr(data, "aggregation_temporality", 0), "unspecified")
    monotonic = bool(getattr(data, "is_monotonic", False))
    meta = metas.add(builders[kind].sets.names.metric(name), description, normalize_unit(unit), kind, temporality, monotonic)
    builders[kind].add(data.data_points, meta, origin)
