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


def metrics_to_arrow(request, sets: AttributeSets) -> AdaptResult:
    """Map a (lenient) ExportMetricsServiceRequest to `metric_points` drafts, one per kind."""
    sets.begin()
    outcome = Outcome()
    origins, metas = Origins(sets), _Metas()
    builders = {kind: cls(sets) for kind, cls in _BUILDERS.items() if kind != "sum"}
    builders["sum"] = builders["gauge"]
    for rm in request.resource_metrics:
        try:
            resource = sets.id_of(tuple(rm.resource.attributes))
        except InvalidAttributes as exc:
            outcome.reject("invalid_attributes", f"resource attributes: {exc}", sum(_scope_points(sm) for sm in rm.scope_metrics))
            continue
        for sm in rm.scope_metrics:
            try:
                origin = origins.add(resource, _text(sm.scope.name), _text(sm.scope.version))
            except UnicodeDecodeError:
                outcome.reject("invalid_utf8", "scope name or version is not valid UTF-8", _scope_points(sm))
                continue
            for metric in sm.metrics:
                _add_metric(metric, origin, metas, builders, outcome)
    drafts = [_draft(b, metas, origins) for k, b in builders.items() if k != "sum" and len(b)]
    return AdaptResult(drafts, outcome)


def _add_metric(metric, origin: int, metas: _Metas, builders: dict[str, _Points], outcome: Outcome) -> None:
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
    builders[kind].add(data.data_points, meta, origin)
