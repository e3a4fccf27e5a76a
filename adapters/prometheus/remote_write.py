"""Prometheus remote write 1.0 to rows of `metric_points`.

Prometheus sends metadata (type, help, unit per family) in requests of their
own, about once a minute, so `PrometheusMetadata` remembers it between
requests; until a family's metadata has arrived its type comes from the name.
Refused (counted, never failing the request): series without `__name__` or
with invalid UTF-8, samples outside the accept window, repeated samples of a
series and timestamp, native histograms (not mapped yet).

Given the request's bytes (`raw`), its series and samples come from the
compiled walker (`adapters/otlp/native`, `write_request`) when it is installed:
series are found by a keyed 128-bit hash of their raw labels in a per-tenant
index (`_WalkCache`), and samples become columns without a Python object each.
A series met for the first time is worked out from its raw labels exactly as
the Python walk does; the result is the same (the tests compare the two).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from telemetry_gateway.adapters.base import AdaptResult, Outcome
from telemetry_gateway.adapters.points import STALE_NAN_BITS, PointRows, SeriesTable, is_stale_marker
from telemetry_gateway.adapters.prometheus.families import FamilyInfo, known_family, prepared_series, series_handle
from telemetry_gateway.adapters.attributes import AttributeLimits, AttributeSets, InvalidAttributes, SetIndex, varint
from telemetry_gateway.adapters.prometheus.prompb import METRIC_TYPES, LabelList, WriteRequest

try:  # the compiled walker; without it, series and samples take the Python walk
    from telemetry_gateway_native import write_request as native_write_request
except ImportError:
    native_write_request = None

log = logging.getLogger(__name__)
decode_request = WriteRequest.FromString
mismatches = 0  # requests where the compiled walker and the parsed request disagreed
_HISTOGRAMS = "native histograms are not supported yet"
_DUPLICATE = "duplicate sample (same series and timestamp)"
# Sample timestamps (ms) whose nanoseconds fit an int64; others take the Python walk, which refuses them.
_MAX_MS = (2**63 - 1) // 1_000_000


@dataclass
class Received:
    message: object
    raw: bytes


def decode_received(payload: bytes) -> Received:
    return Received(decode_request(payload), bytes(payload))


class PrometheusMetadata:
    """Family metadata from remote-write requests, and the decoded labels of series seen."""

    def __init__(self, max_families: int = 100_000, max_series: int = 500_000, limits: AttributeLimits | None = None,
                 families: dict[str, FamilyInfo] | None = None) -> None:
        self.limits = limits or AttributeLimits()
        self.families: dict[str, FamilyInfo] = dict(families or {})
        self.changed = False  # since the families were last saved (`gateway.pipeline` keeps them across restarts)
        self._max = max_families
        # By a series' raw Label encodings (the Python walk) or by the compiled walker's 16-byte key.
        self.series: dict[tuple[bytes, ...] | bytes, tuple[str, dict[str, str]]] = {}
        self._max_series = max_series
        self.version = 0  # bumped whenever a family's metadata changes: what series worked out from it is stale
        self.walk_cache: _WalkCache | None = None

    def labels_of(self, raw: tuple[bytes, ...]) -> tuple[str, dict[str, str]]:
        """(metric name, other labels) of raw Label encodings; raises ValueError."""
        found = self.series.get(raw)
        if found is not None:
            return found
        self.limits.check_count(len(raw) - 1)
        return self._decode(raw, b"".join(b"\x0a" + varint(len(item)) + item for item in raw))

    def labels_framed(self, key: bytes, count: int, framed: bytes) -> tuple[str, dict[str, str]]:
        """`labels_of` for a series the compiled walker read: `key` is its 16-byte key, `framed` its
        `count` Label encodings as a LabelList encoding."""
        found = self.series.get(key)
        if found is not None:
            return found
        self.limits.check_count(count - 1)
        return self._decode(key, framed)

    def _decode(self, key, framed: bytes) -> tuple[str, dict[str, str]]:
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
        self.series[key] = (name, labels)
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
        self.version += 1

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


class NativeMismatch(Exception):
    """The compiled walker and the parsed request disagree on the request's series."""


def remote_write_to_arrow(request, metadata: PrometheusMetadata, sets: AttributeSets,
                          raw: bytes | None = None) -> AdaptResult:
    metadata.update(request.metadata)
    walked = _walk(raw)
    if walked is not None:
        try:
            return _adapt_walked(request, raw, walked, metadata, sets)
        except NativeMismatch as exc:
            global mismatches
            mismatches += 1
            if mismatches % 1000 == 1:  # a sender repeating such a request must not flood the log
                log.warning("the compiled remote-write walker disagreed with the parsed request (%s; %d so far); "
                            "adapted in Python", exc, mismatches)
    return _adapt(request, metadata, sets)


def _adapt(request, metadata: PrometheusMetadata, sets: AttributeSets) -> AdaptResult:
    decoded = _decode_series(request, metadata)
    names = sets.names
    outcome = Outcome()
    rows = PointRows(sets)
    handles: dict[tuple[bytes, ...], int] = {}
    seen: set[tuple[int, int]] = set()
    infos: dict[str, FamilyInfo | None] = {}  # a request brings each name for many series
    counted: dict[tuple[bytes, ...], int] = {}
    for _, raw, _ in decoded:
        counted[raw] = counted.get(raw, 0) + 1
    for series, raw, got in decoded:
        if series.histograms:
            outcome.reject("unsupported", _HISTOGRAMS, len(series.histograms))
        if isinstance(got, ValueError):
            outcome.reject(_code(got), str(got), len(series.samples))
            continue
        name, labels = got
        if raw in handles:
            handle = handles[raw]
        else:
            info = infos[name] if name in infos else infos.setdefault(name, known_family(name, metadata.lookup))
            handle = series_handle(rows, raw, name, labels, metadata.lookup, names, info)
        handles[raw] = handle
        # A series that comes again in the request is checked from its first sample on.
        check = counted[raw] > 1 or len(series.samples) > 1
        for sample in series.samples:
            if check:
                point = (handle, sample.timestamp)
                if point in seen:
                    outcome.reject("duplicate", _DUPLICATE)
                    continue
                seen.add(point)
            value = sample.value
            stale = value != value and is_stale_marker(value)
            rows.value(handle, sample.timestamp * 1_000_000, math.nan if stale else value, stale)
    return AdaptResult([rows.finish()], outcome)


# -- the compiled walk ---------------------------------------------------------------------------

@dataclass
class _Walked:
    samples: np.ndarray  # per series
    histograms: np.ndarray
    keys: np.ndarray  # 16-byte keys
    label_first: np.ndarray
    label_count: np.ndarray
    label_offset: np.ndarray  # per label
    label_len: np.ndarray
    value: np.ndarray  # per sample
    timestamp: np.ndarray


def _walk(raw: bytes | None) -> _Walked | None:
    if raw is None or native_write_request is None or SetIndex is None:
        return None
    try:
        columns = native_write_request(raw)
    except ValueError:  # bytes the parser took but the walker does not read (a group): the Python walk does
        return None
    types = (np.uint32, np.uint32, np.dtype((np.void, 16)), np.uint32, np.uint32, np.uint32, np.uint32,
             np.float64, np.int64)
    return _Walked(*(np.frombuffer(c, t) for c, t in zip(columns, types)))


class _WalkCache:
    """Per tenant: what each series seen by the walker resolved to, by its 16-byte key. Valid while the
    tenant's attribute sets (their ids) and the families' metadata stay as they were."""

    MAX = 500_000

    def __init__(self, stamp: tuple) -> None:
        self.stamp = stamp
        self.index = SetIndex()
        self.series = SeriesTable()  # what `PointRows.add_series` takes, per series, also as columns


def _walk_cache(metadata: PrometheusMetadata, sets: AttributeSets) -> _WalkCache:
    stamp = (id(sets), sets.generation, metadata.version)
    cache = metadata.walk_cache
    if cache is None or cache.stamp != stamp or len(cache.series) >= _WalkCache.MAX:
        cache = metadata.walk_cache = _WalkCache(stamp)
    return cache


def _adapt_walked(request, raw: bytes, w: _Walked, metadata: PrometheusMetadata, sets: AttributeSets) -> AdaptResult:
    if len(w.samples) != len(request.timeseries):
        raise NativeMismatch(f"the request has {len(request.timeseries)} series, the walker read {len(w.samples)}")
    if len(w.timestamp) and np.abs(w.timestamp).max() > _MAX_MS:
        raise NativeMismatch("a sample timestamp is out of range")
    outcome = Outcome()
    rows = PointRows(sets)  # may reset the tenant's sets: before the cache is checked
    outcome.reject("unsupported", _HISTOGRAMS, int(w.histograms.sum()))
    ids = _series_ids(raw, w, metadata, sets, outcome)
    per_sample = np.repeat(ids, w.samples)
    kept = per_sample >= 0
    kept &= _first_of_each(per_sample, w.timestamp, kept, outcome)
    rows.series = metadata.walk_cache.series  # the ids are its entries
    value = w.value[kept].copy()
    stale = value.view(np.uint64) == STALE_NAN_BITS
    value[stale] = math.nan
    rows.values(per_sample[kept], w.timestamp[kept] * 1_000_000, value, stale)
    return AdaptResult([rows.finish()], outcome)


def _series_ids(raw: bytes, w: _Walked, metadata: PrometheusMetadata, sets: AttributeSets,
                outcome: Outcome) -> np.ndarray:
    """Each series' entry in the walk cache; -1 for a series refused (its samples counted here)."""
    for _ in range(3):
        cache = _walk_cache(metadata, sets)
        found, unknown = cache.index.lookup(w.keys.tobytes())
        ids = np.frombuffer(found, np.int64).copy()
        if not unknown:
            return ids
        # Every new series is decoded before any is resolved, as in the Python walk: decoding a
        # `_bucket` series types its family (`infer`). That makes what the cache holds stale, and
        # the lookup is made again (the second round infers nothing new).
        framed = _Framing(raw, w)
        decoded = {j: _decoded(w, j, framed, metadata) for j in np.flatnonzero(ids < 0).tolist()}
        if _walk_cache(metadata, sets) is cache:
            break
    else:  # families still changing: more new families in one request than `max_families` holds
        raise NativeMismatch("the families' metadata kept changing while the request's series were decoded")
    infos: dict[str, FamilyInfo | None] = {}
    for j, (key, got) in decoded.items():
        if isinstance(got, ValueError):
            outcome.reject(_code(got), str(got), int(w.samples[j]))
            ids[j] = -1
            continue
        entry = cache.index.get(key)  # a series that comes twice in the request is resolved once
        if entry is None:
            name, label_map = got
            info = infos[name] if name in infos else infos.setdefault(name, known_family(name, metadata.lookup))
            entry = cache.series.append(prepared_series(sets, key, name, label_map, metadata.lookup, sets.names, info))
            cache.index[key] = entry
        ids[j] = entry
    return ids


class _Framing:
    """Each series' labels as a LabelList encoding. A series' Label fields usually sit one after
    another in the request, each with the shortest tag and length: then they are that slice of the
    request, which is exactly the LabelList encoding of them. Otherwise they are framed anew."""

    def __init__(self, raw: bytes, w: _Walked) -> None:
        self.raw, self.w = raw, w
        lengths, offsets = w.label_len.astype(np.int64), w.label_offset.astype(np.int64)
        prefix = 2 + sum((lengths >= 1 << bits).astype(np.int64) for bits in (7, 14, 21, 28))  # tag, length varint
        self.starts, self.ends = offsets - prefix, offsets + lengths
        gaps = np.ones(len(offsets), np.int64)
        gaps[1:] = self.starts[1:] != self.ends[:-1]
        self.gaps = np.cumsum(gaps)  # a series' labels are one run when no gap opens after its first

    def __call__(self, j: int) -> bytes:
        w, raw = self.w, self.raw
        first, count = int(w.label_first[j]), int(w.label_count[j])
        if count == 0:
            return b""
        last = first + count - 1
        at, n = int(w.label_offset[first]), int(w.label_len[first])
        start = int(self.starts[first])
        if self.gaps[last] == self.gaps[first] and raw[start:at] == b"\x0a" + varint(n):
            return raw[start:int(self.ends[last])]
        spans = zip(w.label_offset[first:last + 1].tolist(), w.label_len[first:last + 1].tolist())
        return b"".join(b"\x0a" + varint(n) + raw[at:at + n] for at, n in spans)


def _decoded(w: _Walked, j: int, framed: _Framing, metadata: PrometheusMetadata) -> tuple:
    """(key, (name, labels) or the ValueError) of series `j`."""
    key = w.keys[j].tobytes()
    try:
        return key, metadata.labels_framed(key, int(w.label_count[j]), framed(j))
    except ValueError as exc:
        return key, exc


def _first_of_each(series: np.ndarray, timestamp: np.ndarray, kept: np.ndarray, outcome: Outcome) -> np.ndarray:
    """Samples that are the first of their (series, timestamp) in the request; the rest are counted
    as duplicates."""
    first = np.ones(len(series), bool)
    candidates = np.flatnonzero(kept)
    if len(np.unique(series[candidates])) == len(candidates):
        return first  # one sample per series: nothing can repeat
    pairs = np.empty(len(candidates), [("series", np.int64), ("time", np.int64)])
    pairs["series"], pairs["time"] = series[candidates], timestamp[candidates]
    _, index = np.unique(pairs, return_index=True)
    first[candidates] = False
    first[candidates[index]] = True
    outcome.reject("duplicate", _DUPLICATE, len(candidates) - len(index))
    return first
