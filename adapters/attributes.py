"""Decoding OTLP attributes and AnyValues into the schema's text maps.

Attribute sets repeat: a series sends the same set every interval.
`AttributeSets` keys its registry on the raw bytes of the KeyValue encodings (a
tuple, so element boundaries are part of the key and one sender cannot make
its bytes collide with another's set) and decodes each distinct set once.
The compiled OTLP walker finds sets by a 128-bit SipHash-1-3 of that
tuple, keyed at random per process (`hashed`): a sender who cannot know the
keys cannot aim a collision at another set.

Non-string values become text: numbers and booleans as JSON spells them, bytes
as base64, arrays and maps as JSON, which ClickHouse's JSON functions read back.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError

from telemetry_gateway.adapters.otlp import wire
from telemetry_gateway.adapters.normalize import Names
from telemetry_gateway.adapters.series import pairs_hash

try:  # the compiled walker's index of sets by their keyed hash, and its map gather (adapters/otlp/native)
    from telemetry_gateway_native import SetIndex, gather_maps
except ImportError:
    SetIndex = gather_maps = None

Decoded = tuple[tuple[str, ...], tuple[str, ...]]


class InvalidAttributes(ValueError):
    """An attribute set that cannot be stored (bad UTF-8, malformed bytes, over a limit)."""


@dataclass(frozen=True)
class AttributeLimits:
    """Caps on one item's attribute set, like Prometheus's `label_limit` and
    `label_value_length_limit`: an item over them is refused, not truncated."""

    max_count: int = 128
    max_value_length: int = 4096

    def check_count(self, n: int) -> None:
        if n > self.max_count:
            raise InvalidAttributes(f"more than {self.max_count} attributes (limits.max_attributes)")

    def check(self, keys: tuple[str, ...], values: tuple[str, ...]) -> None:
        self.check_count(len(keys))
        longest = max(max(map(len, values), default=0), max(map(len, keys), default=0))
        if longest > self.max_value_length:
            raise InvalidAttributes(f"an attribute key or value is longer than {self.max_value_length} characters "
                                    "(limits.max_attribute_length)")


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidAttributes(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def _json_value(value) -> object:
    which = value.WhichOneof("value")
    if which == "string_value":
        return _text(value.string_value, "a string value")
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else str(d)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        return [_json_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {_text(kv.key, "a key"): _json_value(kv.value) for kv in value.kvlist_value.values}
    return None


def any_value_text(value) -> str:
    """The text stored for an AnyValue: strings as they are, the rest as JSON."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return _text(value.string_value, "a string value")
    if which is None:
        return ""
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value) if math.isfinite(value.double_value) else str(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return json.dumps(_json_value(value), separators=(",", ":"), ensure_ascii=False)


def service_name(keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    """The resource's service.name, or OpenTelemetry's `unknown_service`."""
    for key, value in zip(keys, values):
        if key == "service.name" and value:
            return value
    return "unknown_service"


def decode_uncached(raw: tuple[bytes, ...]) -> Decoded:
    """Keys and value texts of raw KeyValue encodings; raises InvalidAttributes."""
    keys, values = [], []
    for item in raw:
        pair = _string_pair(item)
        if pair is None:
            return _decode_generic(raw)
        keys.append(pair[0])
        values.append(pair[1])
    return tuple(keys), tuple(values)


def _string_pair(item: bytes) -> tuple[str, str] | None:
    """(key, value) of a KeyValue encoded as SDKs write a short string attribute:
    `0a <key len> key 12 <len> [0a <str len> str]`, every length under 128. None for
    anything else (other value types, longer fields, other field order, bad UTF-8),
    which the protobuf path then decodes. Most new attribute sets are all such pairs,
    and reading them here costs a fifth of building and parsing a message."""
    size = len(item)
    if size < 4 or item[0] != 0x0A or item[1] > 0x7F:
        return None
    at = 2 + item[1]
    if at + 2 > size or item[at] != 0x12 or item[at + 1] > 0x7F or at + 2 + item[at + 1] != size:
        return None
    try:
        key = item[2:at].decode("utf-8")
        if item[at + 1] == 0:
            return key, ""  # an AnyValue with nothing set
        if item[at + 2] != 0x0A or item[at + 3] > 0x7F or at + 4 + item[at + 3] != size:
            return None
        return key, item[at + 4:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decode_generic(raw: tuple[bytes, ...]) -> Decoded:
    framed = b"".join(b"\x0a" + varint(len(item)) + item for item in raw)
    try:
        kvs = wire.KeyValueList.FromString(framed).values
    except DecodeError:
        raise InvalidAttributes("an attribute is not a valid KeyValue encoding") from None
    keys = tuple(_text(kv.key, "an attribute key") for kv in kvs)
    values = tuple(any_value_text(kv.value) for kv in kvs)
    return keys, values


def _size(keys: tuple[str, ...], values: tuple[str, ...]) -> int:
    """Rough bytes one set holds here and in the Arrow column (text plus ~50 bytes per Python string)."""
    return sum(map(len, keys)) + sum(map(len, values)) + 100 * len(keys) + 200


class AttributeSets:
    """Distinct attribute sets, each decoded once and given a small integer id.

    Rows keep only the id. `map_column` builds the Arrow map column by taking
    rows from an Arrow array of every known set (a C++ gather), so in steady
    state no row costs a Python string conversion. Sets first seen since the
    last compaction are built per request until the array is compacted again,
    which happens in a request that brings no new set, or once the registry has
    grown by half: a geometric schedule, so the copying stays linear in the
    number of sets.

    Each set's order-insensitive hash feeds the series id. The registry is
    reset whole when it grows past `max_sets`, and only between requests
    (`begin`), so ids stay valid while a request is being adapted.
    """

    def __init__(self, max_sets: int = 200_000, names: Names | None = None, limits: AttributeLimits | None = None,
                 max_bytes: int = 256 << 20) -> None:
        self._max = max_sets
        # Sets are bounded in bytes too: 200k sets of large values would otherwise hold gigabytes.
        self._max_bytes = max_bytes
        self.names = names or Names()
        self.limits = limits or AttributeLimits()
        self.generation = 0
        self._reset()

    def _reset(self) -> None:
        # Raw OTLP KeyValue tuples, and ("labels", sorted items) for text sources, share one index.
        self.generation += 1
        self.bytes = 0
        self.ids: dict[tuple, int] = {(): 0}
        # The same ids by the compiled OTLP walker's 16-byte keyed hash of the raw tuple.
        self.hashed = SetIndex() if SetIndex is not None else {}
        self.keys: list[tuple[str, ...]] = [()]
        self.values: list[tuple[str, ...]] = [()]
        self.hashes: list[int] = [pairs_hash((), ())]
        self._compacted = self._build(range(1))
        self._compacted_hashes = np.asarray(self.hashes, np.uint64)
        self._at_begin = 1  # sets known when the current request began
        # What text sources worked out per series (type, unit, names, set ids); valid while these ids are.
        self.series_cache: dict[tuple, tuple] = {}

    def begin(self) -> None:
        """Call before adapting a request."""
        if len(self.ids) > self._max or self.bytes > self._max_bytes:
            self._reset()
        self._at_begin = len(self.keys)

    def id_of(self, raw: tuple[bytes, ...]) -> int:
        """Id of a raw attribute tuple; raises InvalidAttributes."""
        found = self.ids.get(raw)
        return found if found is not None else self._add(raw)

    def _add(self, raw: tuple[bytes, ...]) -> int:
        self.limits.check_count(len(raw))  # before decoding 100k attributes only to refuse them
        keys, values = self.names.keys(*decode_uncached(raw))
        self.limits.check(keys, values)
        self.bytes += _size(keys, values)
        new = len(self.keys)
        self.keys.append(keys)
        self.values.append(values)
        self.hashes.append(pairs_hash(keys, values))
        self.ids[raw] = new
        return new

    def id_of_labels(self, labels: dict[str, str]) -> int:
        """Id of a set given as text (Prometheus labels, syslog fields)."""
        key = ("labels", *sorted(labels.items()))
        found = self.ids.get(key)
        if found is not None:
            return found
        keys, values = zip(*key[1:]) if len(key) > 1 else ((), ())
        if not {str}.issuperset(map(type, keys + values)):
            # One non-text value would break every later batch built from this shared registry.
            return self.id_of_labels({str(k): str(v) for k, v in labels.items()})
        new = len(self.keys)
        self.keys.append(keys)
        self.values.append(values)
        self.bytes += _size(keys, values)
        self.hashes.append(pairs_hash(keys, values))
        self.ids[key] = new
        return new

    def decode(self, raw: tuple[bytes, ...]) -> Decoded:
        set_id = self.id_of(raw)
        return self.keys[set_id], self.values[set_id]

    def _build(self, set_ids) -> pa.MapArray:
        keys: list[str] = []
        values: list[str] = []
        offsets = [0]
        for set_id in set_ids:
            keys.extend(self.keys[set_id])
            values.extend(self.values[set_id])
            offsets.append(len(keys))
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
        )

    def _compact_if_due(self) -> None:
        # Growth is judged per request (since `begin`), not per call: a request maps several columns,
        # and its second call, seeing no growth since its first, compacted every request that brought
        # new sets, copying the whole array each time.
        known, compacted = len(self.keys), len(self._compacted)
        pending = known - compacted
        if pending and (known == self._at_begin or pending >= max(4096, compacted // 2)):
            self._compacted = pa.concat_arrays([self._compacted, self._build(range(compacted, known))])
            self._compacted_hashes = np.asarray(self.hashes, np.uint64)

    def map_column(self, ids: list[int]) -> tuple[pa.MapArray, np.ndarray]:
        """(map column, per-row set hashes) for a column of set ids."""
        rows = np.asarray(ids, dtype=np.int64)
        self._compact_if_due()
        compacted = len(self._compacted)
        if rows.size == 0 or rows.max() < compacted:
            return take_maps(self._compacted, rows), self._compacted_hashes[rows]
        unique, inverse = np.unique(rows, return_inverse=True)
        old, new = unique[unique < compacted], unique[unique >= compacted].tolist()
        distinct = pa.concat_arrays([take_maps(self._compacted, old), self._build(new)])
        hashes = np.concatenate([self._compacted_hashes[old], np.asarray([self.hashes[i] for i in new], np.uint64)])
        return take_maps(distinct, inverse), hashes[inverse]


_STRING_MAP = pa.map_(pa.string(), pa.string())  # 32-bit offsets, as the gather reads them


def take_maps(column: pa.MapArray, rows: np.ndarray) -> pa.MapArray:
    """`column.take(rows)` for a string-to-string map column; by the compiled gather where it can read
    the buffers (offset 0, no nulls): on 2000 random rows of ten attributes out of 20000, Arrow's take
    cost 225 ns a row, the gather 85 with its copy into new buffers."""
    keys, values = column.keys, column.items
    if gather_maps is None or column.type != _STRING_MAP or column.offset or keys.offset or values.offset \
            or column.null_count or keys.null_count or values.null_count or len(rows) == 0:
        return column.take(pa.array(rows, pa.int64()))
    _, offsets, _, _, key_offsets, key_data, _, value_offsets, value_data = column.buffers()
    if any(b is None for b in (offsets, key_offsets, key_data, value_offsets, value_data)):
        return column.take(pa.array(rows, pa.int64()))  # built without a data buffer: nothing to share
    n, entries = len(column), len(keys)
    offsets, key_offsets, key_data, value_offsets, value_data = gather_maps(
        np.frombuffer(offsets, np.int32, n + 1), np.frombuffer(key_offsets, np.int32, entries + 1),
        np.frombuffer(key_data, np.uint8), np.frombuffer(value_offsets, np.int32, entries + 1),
        np.frombuffer(value_data, np.uint8), np.ascontiguousarray(rows, np.int64))
    total = len(key_offsets) // 4 - 1
    return pa.MapArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), len(rows) + 1, [None, pa.py_buffer(offsets)]),
        pa.Array.from_buffers(pa.string(), total, [None, pa.py_buffer(key_offsets), pa.py_buffer(key_data)]),
        pa.Array.from_buffers(pa.string(), total, [None, pa.py_buffer(value_offsets), pa.py_buffer(value_data)]),
        type=column.type)
