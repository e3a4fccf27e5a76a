"""Decoding OTLP attributes and AnyValues into the schema's text maps.

Attribute sets repeat: a series sends the same set every interval. The decoder
keys a cache on the raw bytes of the KeyValue encodings (a tuple, so element
boundaries are part of the key and one sender cannot make its bytes collide
with another's set) and decodes each distinct set once.

Non-string values become text: numbers and booleans as JSON spells them, bytes
as base64, arrays and maps as JSON, which ClickHouse's JSON functions read back.
"""

from __future__ import annotations

import base64
import json
import math

from google.protobuf.message import DecodeError

from adapters.otlp import wire

Decoded = tuple[tuple[str, ...], tuple[str, ...]]
EMPTY: Decoded = ((), ())


class InvalidAttributes(ValueError):
    """An attribute set that cannot be stored (bad UTF-8, malformed bytes)."""


def _varint(n: int) -> bytes:
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
    framed = b"".join(b"\x0a" + _varint(len(item)) + item for item in raw)
    try:
        kvs = wire.KeyValueList.FromString(framed).values
    except DecodeError:
        raise InvalidAttributes("an attribute is not a valid KeyValue encoding") from None
    keys = tuple(_text(kv.key, "an attribute key") for kv in kvs)
    values = tuple(any_value_text(kv.value) for kv in kvs)
    return keys, values


class AttributeDecoder:
    """Decodes raw KeyValue tuples to (keys, values), caching distinct sets."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._cache: dict[tuple[bytes, ...], Decoded] = {}
        self._max = max_entries

    def decode(self, raw: tuple[bytes, ...]) -> Decoded:
        hit = self._cache.get(raw)
        if hit is not None:
            return hit
        if not raw:
            return EMPTY
        decoded = decode_uncached(raw)
        if len(self._cache) >= self._max:
            # A full cache is dropped whole: cheaper than LRU bookkeeping per
            # point, and a steady set of series refills it within one interval.
            self._cache.clear()
        self._cache[raw] = decoded
        return decoded
