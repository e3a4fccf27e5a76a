"""Attribute decoding: the fast path for string pairs agrees with the protobuf path on anything."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
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


MAPS = st.lists(st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=6), min_size=1, max_size=30)


@settings(max_examples=300)
@given(MAPS, st.data())
def test_the_compiled_gather_takes_exactly_what_arrow_takes(maps, data):
    """Empty maps, non-ASCII text, repeated and reordered rows, and a column built from two (as the
    compacted array grows): the same column as Arrow's take."""
    from telemetry_gateway.adapters.attributes import gather_maps, take_maps

    assert gather_maps is not None, "the compiled module is part of the install"
    half = len(maps) // 2
    parts = [pa.array([list(m.items()) for m in part], pa.map_(pa.string(), pa.string())) for part in (maps[:half], maps[half:])]
    column = pa.concat_arrays([p for p in parts if len(p)])
    rows = np.asarray(data.draw(st.lists(st.integers(0, len(maps) - 1), max_size=60)), np.int64)
    taken = take_maps(column, rows)
    assert taken.equals(column.take(pa.array(rows, pa.int64())))
    assert taken.to_pylist() == [column[int(r)].as_py() for r in rows]


def test_the_gather_refuses_a_row_out_of_range_and_arrow_takes_what_it_cannot_read():
    from telemetry_gateway.adapters.attributes import gather_maps, take_maps

    column = pa.array([[("a", "x")], [], [("b", "yy"), ("c", "")]], pa.map_(pa.string(), pa.string()))
    _, offsets, _, _, key_offsets, key_data, _, value_offsets, value_data = column.buffers()
    views = (np.frombuffer(offsets, np.int32, 4), np.frombuffer(key_offsets, np.int32, 4), np.frombuffer(key_data, np.uint8),
             np.frombuffer(value_offsets, np.int32, 4), np.frombuffer(value_data, np.uint8))
    for bad in ([3], [-1]):
        with pytest.raises(ValueError, match="not among 3"):
            gather_maps(*views, np.asarray(bad, np.int64))
    with pytest.raises(ValueError, match="do not describe"):
        gather_maps(*views[:2], views[2][:1], *views[3:], np.asarray([2], np.int64))
    sliced = column.slice(1)
    assert take_maps(sliced, np.asarray([1, 0], np.int64)).to_pylist() == [[("b", "yy"), ("c", "")], []]
    wide = column.cast(pa.map_(pa.large_string(), pa.string()))  # 64-bit offsets: not what the gather reads
    assert take_maps(wide, np.asarray([2], np.int64)).to_pylist() == [[("b", "yy"), ("c", "")]]
