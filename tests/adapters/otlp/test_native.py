"""The compiled OTLP walker (adapters/otlp/native) against the Python walk, the reference:
the same rows, the same refusals, on recorded, generated and hand-encoded requests."""

from __future__ import annotations

import math
import struct
import time

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.payloads import metrics_requests
from telemetry_gateway.adapters.attributes import AttributeLimits, AttributeSets, varint
from telemetry_gateway.adapters.otlp import metrics
from telemetry_gateway.adapters.otlp.metrics import decode_request
from tests.adapters.otlp.helpers import TESTDATA, context, finalized
from tests.durability.test_every_shape_is_stored import metrics_request

NOW = time.time_ns()
CTX = context(NOW)


def plain(value):
    """Rows with NaN spelled out, so equal rows compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def adapted_both(raw: bytes, python_sets: AttributeSets | None = None, native_sets: AttributeSets | None = None):
    """The Python walk over the full parse, and the gateway's own path: the shallow parse, whose
    gauge and sum points stay encoded, with the walker's columns."""
    python_sets, native_sets = python_sets or AttributeSets(), native_sets or AttributeSets()
    reference = finalized(metrics._adapt(decode_request(raw), python_sets, None), CTX)
    received = metrics.decode_received(raw)
    assert received.walked is not None, "the compiled walker did not read this request"
    numbers = metrics._NativeNumbers(native_sets, raw, received.walked)
    # _adapt raises NativeMismatch where the two disagree on the request's shape.
    native = finalized(metrics._adapt(received.message, native_sets, numbers), CTX)
    return reference, native


def assert_same(raw: bytes, **sets) -> None:
    reference, native = adapted_both(raw, **sets)
    assert native.outcome == reference.outcome
    assert native.table.schema == reference.table.schema
    assert plain(native.table.to_pylist()) == plain(reference.table.to_pylist())


def mutated(data, raw: bytes) -> bytes:
    """`raw` with one to four bytes flipped, inserted or deleted, as hypothesis draws them."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(out)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and at < len(out):
            out[at] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del out[at:at + data.draw(st.integers(1, 8))]
    return bytes(out)


def test_the_compiled_walker_is_installed():
    # deploy/setup-venv.sh builds it; without it the gateway runs, but this suite must cover it.
    assert metrics.native_number_points is not None


def test_an_sdk_request_gives_the_same_rows():
    assert_same((TESTDATA / "sdk_metrics.binpb").read_bytes())


def test_load_payloads_give_the_same_rows_and_sets_seen_before_are_found_by_hash():
    python_sets, native_sets = AttributeSets(), AttributeSets()
    for raw in metrics_requests(3, 500, 700):
        assert_same(raw, python_sets=python_sets, native_sets=native_sets)
    assert len(native_sets.hashed) == 700 and native_sets.keys == python_sets.keys


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metrics_request())
def test_generated_requests_give_the_same_rows(raw):
    assert_same(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_requests_give_the_same_rows_or_the_same_refusal(data):
    raw = mutated(data, data.draw(metrics_request()))
    try:
        decode_request(raw)
    except DecodeError:
        # Refused before any walk, and by the gateway's own decoding too: the shallow parse does
        # not read gauge and sum points, the walker must refuse what the full parse refuses there.
        with pytest.raises(DecodeError):
            metrics.decode_received(raw)
        return
    if metrics.decode_received(raw).walked is None:
        return  # read by the Python walk alone (a group in an unknown field)
    assert_same(raw)


# -- hand-encoded requests: what protobuf allows and SDKs never send ---------------------------

def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, body: bytes) -> bytes:
    return key(field, 2) + varint(len(body)) + body


def fixed(field: int, value: int) -> bytes:
    return key(field, 1) + struct.pack("<Q", value & (2**64 - 1))


def double(field: int, value: float) -> bytes:
    return key(field, 1) + struct.pack("<d", value)


def attr(k: bytes, v: bytes) -> bytes:
    return ld(7, ld(1, k) + ld(2, ld(1, v)))


def point(*fields: bytes, at: int = NOW) -> bytes:
    return ld(1, fixed(3, at) + b"".join(fields))


def request(*metric_bodies: bytes, resource: bytes = b"", scope: bytes = b"") -> bytes:
    metrics_ = b"".join(ld(2, body) for body in metric_bodies)
    return ld(1, ld(1, resource) + ld(2, ld(1, scope) + metrics_))


GAUGE = 5
SUM = 7
HISTOGRAM = 9
NAME = ld(1, b"m")

HOSTILE = {
    "oneof switches gauge, histogram, gauge": request(
        NAME + ld(GAUGE, point(double(4, 1.0))) + ld(HISTOGRAM, ld(1, fixed(3, NOW))) + ld(GAUGE, point(double(4, 2.0)))),
    "a oneof member twice merges": request(NAME + ld(GAUGE, point(double(4, 1.0))) + ld(GAUGE, point(double(4, 2.0)))),
    "sum replaced by gauge": request(NAME + ld(SUM, point(double(4, 1.0)) + varint(2 << 3) + varint(2)) + ld(GAUGE, point())),
    "last value wins": request(NAME + ld(GAUGE, point(double(4, 1.5), fixed(6, 7)) + point(fixed(6, -3), double(4, 2.5)))),
    "duplicate times": request(NAME + ld(GAUGE, point(fixed(3, NOW - 5), double(4, 1.0)))),
    "unknown fields everywhere": (
        key(99, 0) + varint(5)
        + request(NAME + key(98, 5) + b"abcd" + ld(GAUGE, ld(97, b"x") + point(key(96, 0) + varint(1), double(4, 1.0))))),
    "wrong wire types are unknown fields": request(
        NAME + key(GAUGE, 0) + varint(3) + ld(GAUGE, point(key(3, 0) + varint(5), key(7, 0) + varint(1), double(4, 1.0)))),
    "attributes around other fields": request(
        NAME + ld(GAUGE, point(attr(b"a", b"1"), double(4, 1.0), attr(b"b", b"2")) + point(attr(b"a", b"1"), attr(b"b", b"2")))),
    "flags over 32 bits": request(NAME + ld(GAUGE, point(key(8, 0) + varint(2**40 + 1), double(4, 1.0)))),
    "integers at the edges": request(NAME + ld(GAUGE, point(fixed(6, -(2**63))) + point(fixed(6, 2**53 + 1)))),
    "NaN with a payload": request(NAME + ld(GAUGE, point(key(4, 1) + struct.pack("<Q", 0x7FF8000000000123)))),
    "no value at all": request(NAME + ld(GAUGE, point() + point(key(8, 0) + varint(1)))),
    "attribute value not UTF-8": request(NAME + ld(GAUGE, point(attr(b"a", b"\xff"), double(4, 1.0)) + point(double(4, 2.0)))),
    "resource refused, then a good one": (
        request(NAME + ld(GAUGE, point(double(4, 1.0))), resource=attr(b"r", b"\xfe"))
        + request(ld(1, b"n") + ld(GAUGE, point(double(4, 3.0))))),
    "scope name not UTF-8, then a good scope": (
        request(NAME + ld(GAUGE, point(double(4, 1.0))), scope=ld(1, b"\xc3"))
        + request(ld(1, b"n") + ld(GAUGE, point(double(4, 3.0))))),
    "metric names empty or not UTF-8": request(
        ld(GAUGE, point(double(4, 1.0))), ld(1, b"\xff") + ld(GAUGE, point(double(4, 1.0))), NAME + ld(GAUGE, point(double(4, 2.0)))),
    "a metric with no data": request(NAME, NAME + ld(SUM, point(double(4, -1.0)) + key(3, 0) + varint(1))),
    "exemplars, which the walker checks but does not read": request(NAME + ld(GAUGE, point(
        double(4, 1.0), ld(5, fixed(2, NOW) + double(3, 2.0) + ld(4, b"12345678") + ld(7, attr(b"e", b"1"))), ld(5, b"")))),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hand_encoded_requests_give_the_same_rows(name):
    assert_same(HOSTILE[name])


def test_over_the_attribute_limit_is_refused_the_same():
    raw = request(NAME + ld(GAUGE, point(attr(b"a", b"1"), attr(b"b", b"2"), attr(b"c", b"3"), double(4, 1.0))
                             + point(attr(b"a", b"1"), double(4, 2.0))))
    limits = AttributeLimits(max_count=2)
    reference, native = adapted_both(raw, AttributeSets(limits=limits), AttributeSets(limits=limits))
    assert native.outcome == reference.outcome and reference.outcome.rejected_count == 1
    assert plain(native.table.to_pylist()) == plain(reference.table.to_pylist())


def test_what_the_walker_cannot_read_takes_the_python_walk():
    group = key(50, 3) + key(1, 0) + varint(1) + key(50, 4)  # a group in an unknown field: protobuf skips it
    raw = request(NAME + ld(GAUGE, point(double(4, 1.0)) + group))
    decode_request(raw)
    assert metrics._native_numbers(AttributeSets(), raw) is None
    adapted = finalized(metrics.metrics_to_arrow(decode_request(raw), AttributeSets(), raw=raw), CTX)
    assert adapted.table.column("value").to_pylist() == [1.0]
    received = metrics.decode_received(raw)  # the gateway's path: the full parse, then the Python walk
    assert received.walked is None
    assert finalized(metrics.adapt_received(received, AttributeSets()), CTX).table.column("value").to_pylist() == [1.0]


def test_a_malformed_exemplar_is_refused_as_the_full_parse_refuses_it():
    """The shallow parse leaves gauge and sum points to the walker, which does not read exemplars
    but must still refuse one that is not a message, where the full parse refuses the request."""
    exemplar = key(3, 1) + b"\x01\x02"  # a fixed64 time cut short
    raw = request(NAME + ld(GAUGE, point(double(4, 1.0), ld(5, exemplar))))
    with pytest.raises(DecodeError):
        decode_request(raw)
    with pytest.raises(DecodeError):
        metrics.decode_received(raw)
    fine = request(NAME + ld(GAUGE, point(double(4, 1.0), ld(5, fixed(2, NOW) + double(3, 2.0) + ld(4, b"12345678")))))
    assert metrics.decode_received(fine).walked is not None
    assert_same(fine)


def test_garbage_is_a_value_error():
    for garbage in (b"\x0a", b"\x0a\x05\x12", b"\x08" + b"\xff" * 11, b"\x00\x00", b"\x0b\x0c"):
        with pytest.raises(ValueError):
            metrics.native_number_points(garbage)


def test_sets_that_share_one_hash_half_stay_apart():
    raw = request(NAME + ld(GAUGE, point(attr(b"a", b"1"), double(4, 1.0)) + point(attr(b"a", b"2"), double(4, 2.0))))
    columns = list(metrics.native_number_points(raw))
    hashes = bytearray(columns[6])
    hashes[16:24] = hashes[0:8]  # the second point's first half made equal to the first's
    columns[6] = bytes(hashes)
    sets = AttributeSets()
    adapted = finalized(metrics._adapt(decode_request(raw), sets, metrics._NativeNumbers(sets, raw, tuple(columns))), CTX)
    assert adapted.table.column("attributes").to_pylist() == [[("a", "1")], [("a", "2")]]


def test_a_walker_that_disagrees_is_overruled_and_logged_once_per_thousand(monkeypatch, caplog):
    raw = metrics_requests(1, 20, 20)[0]
    real = metrics.native_number_points

    def one_point_short(data: bytes):
        columns = list(real(data))
        counts = bytearray(columns[0])
        counts[0] -= 1  # the first metric: one point fewer than the request holds
        columns[0] = bytes(counts)
        return tuple(columns)

    monkeypatch.setattr(metrics, "native_number_points", one_point_short)
    monkeypatch.setattr(metrics, "mismatches", 0)
    expected = finalized(metrics._adapt(decode_request(raw), AttributeSets(), None), CTX)
    for _ in range(1000):
        adapted = finalized(metrics.metrics_to_arrow(decode_request(raw), AttributeSets(), raw=raw), CTX)
    assert plain(adapted.table.to_pylist()) == plain(expected.table.to_pylist()) and adapted.table.num_rows == 20
    # The gateway's path: the shallow parse is replaced by the full one for the Python walk.
    adapted = finalized(metrics.adapt_received(metrics.decode_received(raw), AttributeSets()), CTX)
    assert plain(adapted.table.to_pylist()) == plain(expected.table.to_pylist())
    assert metrics.mismatches == 1001
    assert [r.getMessage()[:50] for r in caplog.records] == ["the compiled OTLP walker disagreed with the parsed"] * 2
