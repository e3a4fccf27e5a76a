"""Prometheus remote write 1.0 to rows of `metric_points`.

Prometheus sends metadata (type, help, unit per family) in requests of their
own, about once a minute, so `PrometheusMetadata` remembers it between
requests; until a family's metadata has arrived its type comes from the name.
Refused (counted, never failing the request): series without `__name__` or
with invalid UTF-8, samples outside the accept window, repeated samples of a
series and timestamp, native histograms (not mapped yet).
"""

from __future__ import annotations

import math

from google.protobuf.message import DecodeError

from telemetry_gateway.adapters.base import AdaptResult, Outcome
from telemetry_gateway.adapters.points import PointRows, is_stale_marker
from telemetry_gateway.adapters.prometheus.families import FamilyInfo, known_family, series_handle
from telemetry_gateway.adapters.attributes import AttributeLimits, AttributeSets, InvalidAttributes, varint
from telemetry_gateway.adapters.prometheus.prompb import METRIC_TYPES, LabelList, WriteRequest

decode_request = WriteRequest.FromString


class PrometheusMetadata:
    """Family metadata from remote-write requests, and the decoded labels of series seen."""

    def __init__(self, max_families: int = 100_000, max_series: int = 500_000, limits: AttributeLimits | None = None,
                 families: dict[str, FamilyInfo] | None = None) -> None:
        self.limits = limits or AttributeLimits()
        self.families: dict[str, FamilyInfo] = dict(families or {})
        self.changed = False  # since the families were last saved (`gateway.pipeline` keeps them across restarts)
        self._max = max_families
        self.series: dict[tuple[bytes, ...], tuple[str, dict[str, str]]] = {}
        self._max_series = max_series

    def labels_of(self, raw: tuple[bytes, ...]) -> tuple[str, dict[str, str]]:
        """(metric name, other labels) of raw Label encodings; raises ValueError."""
        found = self.series.get(raw)
        if found is not None:
            return found
        self.limits.check_count(len(raw) - 1)
        framed = b"".join(b"\x0a" + varint(len(item)) + item for item in raw)
        try:
            pairs = [(l.name.decode("utf-8"), l.value.decode("utf-8")) for l in LabelList.FromString(framed).labels]
        except UnicodeDecodeError:
            raise ValueError("a label is not valid UTF-8") from None
        except DecodeError:
            raise ValueError("a label is not a valid Label encoding") from None
        labels = dict(pairs)
        if len(labels) != len(pairs):
            # Prometheus refuses such a series too: which value would be the label's?
            raise ValueError("a series has the same label name twice")
        # An empty value means the label is absent (Prometheus' rule), as the scrape poller does too.
        labels = {k: v for k, v in labels.items() if v != ""}
        self.limits.check(tuple(labels), tuple(labels.values()))
        name = labels.pop("__name__", "")
        if not name:
            raise ValueError("series without __name__")
        if len(self.series) >= self._max_series:
            self.series.clear()
        self.series[raw] = (name, labels)
        self.infer(name, labels)
        return name, labels

    def update(self, metadata) -> None:
        for m in metadata:
            try:
                name = m.metric_family_name.decode("utf-8")
                info = FamilyInfo(METRIC_TYPES.get(m.type, "unknown"), m.help.decode("utf-8"), m.unit.decode("utf-8"))
            except UnicodeDecodeError:
                continue
            self._set(name, info)

    def _set(self, name: str, info: FamilyInfo) -> None:
        if self.families.get(name) == info:
            return
        if len(self.families) >= self._max and name not in self.families:
            self.families.clear()
        self.families[name] = info
        self.changed = True

    def infer(self, name: str, labels: dict[str, str]) -> None:
        """A family's type from its parts, until metadata says: `X_bucket{le}` makes X a histogram and a
        `quantile` label a summary, so `X_count` and `X_sum` are typed as parts even if they come first."""
        if name.endswith("_bucket") and "le" in labels:
            family, kind = name[:-7], "histogram"
        elif "quantile" in labels:
            family, kind = name, "summary"
        else:
            return
        if family not in self.families:
            self._set(family, FamilyInfo(kind))

    def lookup(self, name: str) -> FamilyInfo | None:
        return self.families.get(name)


def _decode_series(request, metadata: PrometheusMetadata) -> list[tuple]:
    """(series, raw labels, (name, labels) or the ValueError) for each series, all decoded before any
    sample is typed: a series decoded for the first time infers its family (`infer`), so a request's
    `_bucket` and quantile series type their families' parts whatever the order."""
    out = []
    for series in request.timeseries:
        raw = tuple(series.labels)
        try:
            out.append((series, raw, metadata.labels_of(raw)))
        except ValueError as exc:
            out.append((series, raw, exc))
    return out


def _code(exc: ValueError) -> str:
    if isinstance(exc, InvalidAttributes):
        return "invalid_attributes"
    return "invalid_name" if "__name__" in str(exc) else "invalid_attributes"


def remote_write_to_arrow(request, metadata: PrometheusMetadata, sets: AttributeSets) -> AdaptResult:
    metadata.update(request.metadata)
    decoded = _decode_series(request, metadata)
    names = sets.names
    outcome = Outcome()
    rows = PointRows(sets)
    handles: dict[tuple[bytes, ...], int] = {}
    seen: set[tuple[int, int]] = set()
    infos: dict[str, FamilyInfo | None] = {}  # a request brings each name for many series
    for series, raw, got in decoded:
        if series.histograms:
            outcome.reject("unsupported", "native histograms are not supported yet", len(series.histograms))
        if isinstance(got, ValueError):
            outcome.reject(_code(got), str(got), len(series.samples))
            continue
        name, labels = got
        repeated = raw in handles
        if repeated:
            handle = handles[raw]
        else:
            info = infos[name] if name in infos else infos.setdefault(name, known_family(name, metadata.lookup))
            handle = series_handle(rows, raw, name, labels, metadata.lookup, names, info)
        handles[raw] = handle
        check = repeated or len(series.samples) > 1
        for sample in series.samples:
            if check:
                point = (handle, sample.timestamp)
                if point in seen:
                    outcome.reject("duplicate", "duplicate sample (same series and timestamp)")
                    continue
                seen.add(point)
            value = sample.value
            stale = value != value and is_stale_marker(value)
            rows.value(handle, sample.timestamp * 1_000_000, math.nan if stale else value, stale)
    return AdaptResult([rows.finish()], outcome)
