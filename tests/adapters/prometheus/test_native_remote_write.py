"""The compiled remote-write walker (adapters/otlp/native, `write_request`) against the Python
walk, the reference: the same rows and the same refusals, request after request on one tenant's
state, on recorded, generated, mutated and hand-encoded requests."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import cramjam
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.prometheus import write_requests
from telemetry_gateway.adapters.attributes import AttributeLimits, AttributeSets, varint
from telemetry_gateway.adapters.points import STALE_NAN_BITS
from telemetry_gateway.adapters.prometheus import remote_write
from telemetry_gateway.adapters.prometheus.remote_write import PrometheusMetadata, decode_request
from tests.adapters.otlp.helpers import context, finalized
from tests.adapters.otlp.test_native import mutated, plain

TESTDATA = Path(__file__).parent / "testdata"
NOW_MS = 1_800_000_000_000
CTX = context(NOW_MS * 1_000_000 + 10**9, source_kind="remote_write")


class Tenant:
    """One tenant's state as the pipeline keeps it, per walk."""

    def __init__(self, limits: AttributeLimits | None = None) -> None:
        self.python = (PrometheusMetadata(limits=limits), AttributeSets(limits=limits))
        self.native = (PrometheusMetadata(limits=limits), AttributeSets(limits=limits))

    def assert_same(self, raw: bytes):
        before = remote_write.mismatches
        assert remote_write._walk(raw) is not None, "the compiled walker did not read this request"
        reference = finalized(remote_write.remote_write_to_arrow(decode_request(raw), *self.python), CTX)
        native = finalized(remote_write.remote_write_to_arrow(decode_request(raw), *self.native, raw=raw), CTX)
        assert remote_write.mismatches == before, "the compiled walk was overruled"
        assert native.outcome == reference.outcome
        assert native.table.schema == reference.table.schema
        assert plain(native.table.to_pylist()) == plain(reference.table.to_pylist())
        bits = [t.column("value").to_numpy().view(np.uint64).tolist() for t in (native.table, reference.table)]
        assert bits[0] == bits[1], "NaN payloads differ (a stale marker must be stored as a plain NaN)"
        assert self.native[0].families == self.python[0].families
        return native


def test_the_compiled_walker_is_installed():
    assert remote_write.native_write_request is not None


def test_recorded_node_exporter_requests_give_the_same_rows():
    tenant = Tenant()
    for name in ("node_exporter_samples.snappy", "node_exporter_metadata.snappy", "node_exporter_samples.snappy"):
        tenant.assert_same(bytes(cramjam.snappy.decompress_raw((TESTDATA / name).read_bytes())))


def test_load_payloads_give_the_same_rows_and_series_seen_before_are_found_by_key():
    tenant = Tenant()
    bodies = [bytes(cramjam.snappy.decompress_raw(b)) for b in write_requests(4, 500, 700)]
    for raw in bodies + bodies[:1]:
        tenant.assert_same(raw)
    cache = tenant.native[0].walk_cache
    assert len(cache.series) == 700 and len(cache.index) == 700


# -- hand-encoded requests --------------------------------------------------------------------

def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, body: bytes) -> bytes:
    return key(field, 2) + varint(len(body)) + body


def label(name: bytes, value: bytes) -> bytes:
    return ld(1, ld(1, name) + ld(2, value))


def sample(value: float | None = 1.0, ts: int | None = NOW_MS, extra: bytes = b"") -> bytes:
    body = b""
    if value is not None:
        body += key(1, 1) + struct.pack("<d", value)
    if ts is not None:
        body += key(2, 0) + varint(ts & (2**64 - 1))
    return ld(2, body + extra)


def series(*parts: bytes) -> bytes:
    return ld(1, b"".join(parts))


UP = label(b"__name__", b"up") + label(b"job", b"api")
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

HOSTILE = {
    "a series twice, one sample each at one time": series(UP, sample(1.0)) + series(UP, sample(2.0)),
    "repeated samples within a series": series(UP, sample(1.0), sample(2.0), sample(3.0, NOW_MS - 1000)),
    "stale marker and other NaNs": series(UP, sample(STALE), sample(math.nan, NOW_MS - 1),
                                          sample(struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0], NOW_MS - 2)),
    "labels in another order are another series": series(label(b"job", b"api"), label(b"__name__", b"up"), sample(1.0))
    + series(UP, sample(2.0)),
    "no __name__, invalid UTF-8, a name twice": series(label(b"job", b"a"), sample())
    + series(label(b"__name__", b"x"), label(b"h", b"\xff"), sample(), sample(2.0, NOW_MS - 1))
    + series(label(b"__name__", b"x"), label(b"h", b"1"), label(b"h", b"2"), sample()),
    "an empty label value is absent": series(label(b"__name__", b"d"), label(b"m", b""), sample())
    + series(label(b"__name__", b"d"), sample(2.0, NOW_MS - 1)),
    "native histograms are counted": series(UP, ld(4, key(15, 0) + varint(5)), ld(4, b""), sample()),
    "exemplars and unknown fields": key(9, 0) + varint(3) + series(UP, ld(3, label(b"trace_id", b"ab")), key(7, 5) + b"abcd",
                                                                  sample(extra=key(9, 0) + varint(1))),
    "wrong wire types are unknown fields": key(1, 0) + varint(4) + series(key(1, 0) + varint(1), UP, key(2, 1) + b"\0" * 8,
                                                                         ld(2, key(1, 0) + varint(5) + key(2, 1) + b"\0" * 8)),
    "the last value and timestamp win": series(UP, ld(2, key(1, 1) + struct.pack("<d", 1.0) + key(2, 0) + varint(NOW_MS - 9)
                                                      + key(1, 1) + struct.pack("<d", 2.0) + key(2, 0) + varint(NOW_MS))),
    "an empty sample, a negative timestamp": series(UP, sample(None, None), sample(3.0, -5)),
    "a series without samples, a request without series": series(UP) + series(),
    "bucket and quantile series type their families whatever the order": (
        series(label(b"__name__", b"rpc_seconds_count"), sample(4.0))
        + series(label(b"__name__", b"rpc_seconds_bucket"), label(b"le", b"+Inf"), sample(4.0))
        + series(label(b"__name__", b"gc_seconds_count"), sample(9.0))
        + series(label(b"__name__", b"gc_seconds"), label(b"quantile", b"0.5"), sample(0.1))),
    "labels between samples": series(label(b"__name__", b"up"), sample(), label(b"job", b"api"), sample(2.0, NOW_MS - 1)),
    "a label length in a padded varint": series(label(b"__name__", b"up"), key(1, 2) + b"\x8a\x00" + ld(1, b"job") + ld(2, b"api"),
                                                sample()),
    "a label value over 127 bytes": series(label(b"__name__", b"up"), label(b"long", b"v" * 300), label(b"job", b"a"), sample()),
    "metadata beside samples": ld(3, key(1, 0) + varint(1) + ld(2, b"up") + ld(4, b"Up.")) + series(UP, sample()),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hand_encoded_requests_give_the_same_rows(name):
    Tenant().assert_same(HOSTILE[name])


def test_labels_that_sit_together_are_taken_as_one_slice_of_the_request():
    raw = (series(UP, sample()) + series(label(b"__name__", b"up"), label(b"long", b"v" * 300), sample())
           + HOSTILE["labels between samples"] + HOSTILE["a label length in a padded varint"] + series(sample()))
    w = remote_write._walk(raw)
    framing = remote_write._Framing(raw, w)
    one_slice = []
    for j in range(len(w.samples)):
        first, count = int(w.label_first[j]), int(w.label_count[j])
        spans = zip(w.label_offset[first:first + count].tolist(), w.label_len[first:first + count].tolist())
        assert framing(j) == b"".join(b"\x0a" + varint(n) + raw[at:at + n] for at, n in spans)
        one_slice.append(count > 0 and framing.gaps[first + count - 1] == framing.gaps[first]
                         and raw[framing.starts[first]] == 0x0a)
    assert one_slice == [True, True, False, False, False]


def test_a_family_typed_later_retypes_series_the_walk_cache_knows():
    tenant = Tenant()
    count = series(label(b"__name__", b"rpc_seconds_count"), sample(4.0))
    assert tenant.assert_same(count).table.column("kind").to_pylist() == ["gauge"]
    typed = tenant.assert_same(count + series(label(b"__name__", b"rpc_seconds_bucket"), label(b"le", b"1"), sample(1.0)))
    assert typed.table.column("kind").to_pylist() == ["sum", "sum"]
    metadata = ld(3, key(1, 0) + varint(2) + ld(2, b"rpc_seconds_count"))  # a gauge, says the metadata
    assert tenant.assert_same(metadata + count).table.column("kind").to_pylist() == ["gauge"]


def test_over_the_attribute_limit_is_refused_the_same():
    tenant = Tenant(AttributeLimits(max_count=2))
    raw = series(UP, label(b"a", b"1"), label(b"b", b"2"), sample()) + series(UP, sample(2.0))
    assert tenant.assert_same(raw).outcome.rejected_count == 1


def test_a_reset_of_the_tenant_sets_empties_the_walk_cache():
    tenant = Tenant()
    tenant.native = (tenant.native[0], AttributeSets(max_sets=3))
    tenant.python = (tenant.python[0], AttributeSets(max_sets=3))
    for n in range(6):
        tenant.assert_same(series(label(b"__name__", b"m"), label(b"i", str(n).encode()), sample()) + series(UP, sample()))
    assert tenant.native[1].generation > 1


@st.composite
def write_request(draw) -> bytes:
    names = st.sampled_from([b"up", b"x_total", b"h_bucket", b"h_count", b"q", b""])
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        labels = [label(b"__name__", draw(names))] if draw(st.integers(0, 5)) else []
        for _ in range(draw(st.integers(0, 3))):
            labels.append(label(draw(st.sampled_from([b"le", b"quantile", b"job", b"a", b"b"])),
                                draw(st.sampled_from([b"", b"1", b"+Inf", b"\xff", b"x"]))))
        if draw(st.booleans()):
            labels = labels[::-1]
        samples = [sample(draw(st.sampled_from([1.0, -2.5, math.nan, STALE, math.inf])),
                          NOW_MS - draw(st.integers(0, 3)) * 1000) for _ in range(draw(st.integers(0, 4)))]
        out += series(*labels, *samples)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(write_request(), min_size=1, max_size=3))
def test_generated_requests_give_the_same_rows_request_after_request(raws):
    tenant = Tenant()
    for raw in raws:
        tenant.assert_same(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_requests_give_the_same_rows_or_the_same_refusal(data):
    raw = mutated(data, data.draw(write_request()))
    try:
        decode_request(raw)
    except DecodeError:
        try:  # refused before any walk; the walker may read such bytes, or refuse them with ValueError only
            remote_write.native_write_request(raw)
        except ValueError:
            pass
        return
    if remote_write._walk(raw) is None:
        return  # read by the Python walk alone (a group in an unknown field)
    Tenant().assert_same(raw)


def test_a_timestamp_past_2262_takes_the_python_walk(monkeypatch):
    monkeypatch.setattr(remote_write, "mismatches", 0)
    raw = series(UP, sample(1.0, 2**62), sample(2.0))
    reference = finalized(remote_write.remote_write_to_arrow(decode_request(raw), PrometheusMetadata(), AttributeSets()), CTX)
    adapted = finalized(remote_write.remote_write_to_arrow(decode_request(raw), PrometheusMetadata(), AttributeSets(),
                                                           raw=raw), CTX)
    assert remote_write.mismatches == 1
    assert adapted.outcome == reference.outcome and adapted.outcome.rejected_count == 1
    assert adapted.table.column("value").to_pylist() == [2.0]


def test_what_the_walker_cannot_read_takes_the_python_walk():
    group = key(50, 3) + key(1, 0) + varint(1) + key(50, 4)
    raw = series(UP, sample(), group)
    decode_request(raw)
    assert remote_write._walk(raw) is None
    adapted = finalized(remote_write.remote_write_to_arrow(decode_request(raw), PrometheusMetadata(), AttributeSets(),
                                                           raw=raw), CTX)
    assert adapted.table.column("value").to_pylist() == [1.0]


def test_garbage_is_a_value_error():
    for garbage in (b"\x0a", b"\x0a\x05\x12", b"\x08" + b"\xff" * 11, b"\x0a\x02\x12\x05", b"\x0b\x0c"):
        with pytest.raises(ValueError):
            remote_write.native_write_request(garbage)
