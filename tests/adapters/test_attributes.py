"""Attribute decoding: the fast path for string pairs agrees with the protobuf path on anything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from telemetry_gateway.adapters.attributes import AttributeSets, InvalidAttributes, _decode_generic, _string_pair, decode_uncached

SCALARS = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), st.text(max_size=200)),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda i: AnyValue(int_value=i), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda d: AnyValue(double_value=d), st.floats(allow_nan=False)),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=50)),
    st.just(AnyValue()),
)
VALUES = st.one_of(SCALARS, st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(SCALARS, max_size=3)))
ENCODED = st.builds(lambda k, v: KeyValue(key=k, value=v).SerializeToString(), st.text(max_size=200), VALUES)


def outcome(decode, raw):
    try:
        return decode(raw)
    except InvalidAttributes as exc:
        return ("refused", str(exc))


@settings(max_examples=400)
@given(st.lists(st.one_of(ENCODED, st.binary(max_size=40)), max_size=6))
def test_the_fast_path_decodes_exactly_what_the_protobuf_path_does(raw):
    assert outcome(decode_uncached, tuple(raw)) == outcome(_decode_generic, tuple(raw))


def test_common_string_attributes_take_the_fast_path():
    pair = KeyValue(key="http.route", value=AnyValue(string_value="/api/items")).SerializeToString()
    assert _string_pair(pair) == ("http.route", "/api/items")
    assert _string_pair(KeyValue(key="k", value=AnyValue(string_value="")).SerializeToString()) == ("k", "")
    assert _string_pair(KeyValue(key="k").SerializeToString()) is None  # no value field at all
    assert _string_pair(KeyValue(key="k", value=AnyValue(int_value=3)).SerializeToString()) is None
    assert _string_pair(KeyValue(key="k", value=AnyValue(string_value="x" * 200)).SerializeToString()) is None


def test_bad_utf8_is_refused_with_the_reason():
    bad = b"\x0a\x01k\x12\x03\x0a\x01\xff"
    with pytest.raises(InvalidAttributes, match="not valid UTF-8"):
        decode_uncached((bad,))


def test_sets_are_copied_into_the_compacted_array_only_once_the_registry_rests_or_grows_by_half():
    sets = AttributeSets()
    for request in range(3):  # every request brings new sets; each maps two columns, as OTLP does
        sets.begin()
        ids = [sets.id_of_labels({"k": f"{request}-{n}"}) for n in range(10)]
        assert [dict(m) for m in sets.map_column(ids)[0].to_pylist()] == [{"k": f"{request}-{n}"} for n in range(10)]
        sets.map_column(ids)
    assert len(sets._compacted) == 1  # not copied per request: that was quadratic in new series
    sets.begin()  # a request with nothing new
    sets.map_column(ids)
    assert len(sets._compacted) == 31
