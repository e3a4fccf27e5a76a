"""Spool record encoding: framing, checksum, and recovery from damage.

A record on disk:

    offset  size  field
    0       4     magic b"TGS1"
    4       1     kind: 1 DATA, 2 INTENT, 3 DONE
    5       1     reserved (0)
    6       2     meta length M (little-endian)
    8       4     payload length P (little-endian)
    12      4     CRC-32 of bytes 4..11, the meta and the payload
    16      M     meta: UTF-8 JSON object
    16+M    P     payload: Arrow IPC stream, or JSON rows (DATA only)

Reading stops being trusting at the first record whose frame runs past the
end of the file or whose checksum fails. Such bytes are reported, and the
reader looks for the next magic that starts a record with a valid checksum,
so one damaged record costs only itself. A torn tail (a crash mid-write)
is the usual case: the writer cuts it before appending again.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"TGS1"
HEADER = struct.Struct("<4sBBHII")
HEADER_SIZE = HEADER.size  # 16
MAX_META = 0xFFFF

DATA, INTENT, DONE = 1, 2, 3
KINDS = (DATA, INTENT, DONE)


@dataclass(frozen=True)
class Record:
    kind: int
    meta: dict
    payload: bytes = b""


@dataclass
class Damage:
    """A byte range that held no valid record."""

    start: int
    end: int
    reason: str


@dataclass
class ScanResult:
    records: list[tuple[int, Record]] = field(default_factory=list)  # (offset, record)
    damage: list[Damage] = field(default_factory=list)
    valid_end: int = 0  # end of the last valid record


def encode(record: Record) -> bytes:
    meta = json.dumps(record.meta, separators=(",", ":")).encode()
    if len(meta) > MAX_META:
        raise ValueError(f"record meta is {len(meta)} bytes, over {MAX_META}")
    lengths = struct.pack("<BBHI", record.kind, 0, len(meta), len(record.payload))
    crc = zlib.crc32(record.payload, zlib.crc32(meta, zlib.crc32(lengths)))
    return MAGIC + lengths + struct.pack("<I", crc) + meta + record.payload


def _decode_at(buf: memoryview, offset: int) -> tuple[Record, int] | str:
    """The record at offset and where it ends, or why there is none."""
    if len(buf) - offset < HEADER_SIZE:
        return "truncated header"
    magic, kind, _, meta_len, payload_len, crc = HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        return "bad magic"
    end = offset + HEADER_SIZE + meta_len + payload_len
    if end > len(buf):
        return "record runs past the end of the file"
    body = buf[offset + 4 : offset + 12]
    meta = buf[offset + HEADER_SIZE : offset + HEADER_SIZE + meta_len]
    payload = buf[offset + HEADER_SIZE + meta_len : end]
    if zlib.crc32(payload, zlib.crc32(meta, zlib.crc32(body))) != crc:
        return "checksum mismatch"
    if kind not in KINDS:
        return f"unknown record kind {kind}"
    try:
        parsed = json.loads(bytes(meta))
    except ValueError:
        return "meta is not JSON"
    return Record(kind, parsed, bytes(payload)), end


def scan(data: bytes) -> ScanResult:
    """Every valid record in `data`, and the ranges that were not."""
    buf = memoryview(data)
    result = ScanResult()
    offset = 0
    while offset < len(buf):
        decoded = _decode_at(buf, offset)
        if isinstance(decoded, tuple):
            record, end = decoded
            result.records.append((offset, record))
            offset = result.valid_end = end
            continue
        resume = _resync(buf, offset + 1)
        result.damage.append(Damage(offset, resume, decoded))
        offset = resume
    return result


def _resync(buf: memoryview, start: int) -> int:
    """Offset of the next valid record at or after start, or the end."""
    data = buf.obj if isinstance(buf.obj, bytes) else bytes(buf)
    position = data.find(MAGIC, start)
    while position != -1:
        if isinstance(_decode_at(buf, position), tuple):
            return position
        position = data.find(MAGIC, position + 1)
    return len(buf)
