"""Prometheus remote write 1.0 to rows of `metric_points`.

Prometheus sends metadata (type, help, unit per family) in requests of their
own, about once a minute, so `PrometheusMetadata` remembers it between
requests; until a family's metadata has arrived its type comes from the name.
Refused (counted, never failing the request): series without `__name__` or
with invalid UTF-8, samples outside the accept window, repeated samples of a
series and timestamp, native histograms (not mapped yet).
"""

from __future__ import annotations

from adapters.base import AdaptResult, IngestContext, Outcome
from adapters.normalize import Names
from adapters.points import PointRows
from adapters.prometheus.families import FamilyInfo, Sample, add_samples
from adapters.prometheus.prompb import METRIC_TYPES, WriteRequest

decode_request = WriteRequest.FromString


class PrometheusMetadata:
    def __init__(self, max_families: int = 100_000) -> None:
        self.families: dict[str, FamilyInfo] = {}
        self._max = max_families

    def update(self, metadata) -> None:
        for m in metadata:
            try:
                name = m.metric_family_name.decode("utf-8")
                info = FamilyInfo(METRIC_TYPES.get(m.type, "unknown"), m.help.decode("utf-8"), m.unit.decode("utf-8"))
            except UnicodeDecodeError:
                continue
            if len(self.families) >= self._max and name not in self.families:
                self.families.clear()
            self.families[name] = info

    def lookup(self, name: str) -> FamilyInfo | None:
        return self.families.get(name)


def remote_write_to_arrow(request, ctx: IngestContext, metadata: PrometheusMetadata, names: Names | None = None) -> AdaptResult:
    metadata.update(request.metadata)
    outcome = Outcome()
    samples: list[Sample] = []
    for series in request.timeseries:
        if series.histograms:
            outcome.reject("native histograms are not supported yet", len(series.histograms))
        try:
            labels = {label.name.decode("utf-8"): label.value.decode("utf-8") for label in series.labels}
        except UnicodeDecodeError:
            outcome.reject("a label is not valid UTF-8", len(series.samples))
            continue
        name = labels.pop("__name__", "")
        if not name:
            outcome.reject("series without __name__", len(series.samples))
            continue
        samples.extend(Sample(name, labels, s.value, s.timestamp) for s in series.samples)
    rows = PointRows()
    add_samples(rows, samples, metadata.lookup, outcome, names)
    return rows.finish(ctx, outcome)
