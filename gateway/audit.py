"""The audit trail of access decisions: `audit_log` rows in the store, and counters on /metrics.

Reads are rare and each gets its own row. Writes come by the thousand per
second, so admitted and refused writes are counted per (principal, tenant,
region, format, result, reason) and written as one row per key every
`interval` seconds: a flood of bad tokens costs a counter, not a row each.
Rows hold names, counts and a hash of a read's statement; never a token,
a payload or the statement itself (it may quote customer data).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from telemetry_gateway.gateway.batch import Batch, Caller, Provenance, new_batch_id
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.schema import AUDIT_LOG


@dataclass(frozen=True)
class _Key:
    tenant: str
    region: str
    principal: str
    result: str
    reason: str
    transport: str
    format: str
    policy_version: str


@dataclass
class _Tally:
    time_ns: int
    peer: str
    requests: int = 0
    items: int = 0
    refused_items: int = 0


class Audit:
    def __init__(self, telemetry: SelfMetrics) -> None:
        self.telemetry = telemetry
        self._lock = threading.Lock()  # writes are decided on the adapter thread, refusals on the loop
        self._writes: dict[_Key, _Tally] = {}
        self._rows: list[dict] = []  # reads, and rows given back by `restore`

    def write_refused(self, fmt: str, caller: Caller, reason: str, tenant: str = "", region: str = "",
                      policy_version: str = "") -> None:
        self.telemetry.decided("write", "refused", tenant)
        key = _Key(tenant, region, caller.token_subject, "refused", reason, caller.transport, fmt, policy_version)
        self._tally(key, caller.peer, 0, 0)

    def write_decided(self, provenance: Provenance, items: int, refused: dict[str, int], regions: set[str],
                      policy_version: str) -> None:
        result = "partial" if refused else "allowed"
        self.telemetry.decided("write", result, provenance.tenant)
        reason = "; ".join(f"{n} {why}" for why, n in sorted(refused.items()))
        c = provenance.caller
        for region in sorted(regions) or [""]:
            key = _Key(provenance.tenant, region, c.token_subject, result, reason, c.transport, provenance.format,
                       policy_version)
            self._tally(key, c.peer, items, sum(refused.values()))
            items = 0  # counted once, on the first region of the request

    def _tally(self, key: _Key, peer: str, items: int, refused_items: int) -> None:
        with self._lock:
            tally = self._writes.get(key)
            if tally is None:
                tally = self._writes[key] = _Tally(time.time_ns(), peer)
            tally.requests += 1
            tally.items += items
            tally.refused_items += refused_items

    def read_decided(self, caller: Caller, tenant: str, region: str, result: str, reason: str, statement: str,
                     policy_version: str, result_bytes: int = 0) -> None:
        self.telemetry.decided("read", result, tenant)
        digest = hashlib.sha256(statement.encode()).hexdigest()[:16]
        row = {"time": time.time_ns(), "tenant": tenant, "region": region, "principal": caller.token_subject,
               "action": "read", "result": result, "reason": reason, "transport": caller.transport,
               "peer": caller.peer, "format": "", "requests": 1, "items": result_bytes, "refused_items": 0,
               "statement_hash": digest, "policy_version": policy_version}
        with self._lock:
            self._rows.append(row)

    def take(self, default_region: str) -> list[Batch]:
        """Rows gathered since the last call, one batch per region (undecided ones in `default_region`)."""
        with self._lock:
            writes, self._writes = self._writes, {}
            rows, self._rows = self._rows, []
        rows += [_write_row(key, tally) for key, tally in writes.items()]
        by_region: dict[str, list[dict]] = {}
        for row in rows:
            by_region.setdefault(row["region"] or default_region, []).append(row)
        return [_batch(region, records) for region, records in sorted(by_region.items())]


    def restore(self, batches: list[Batch]) -> None:
        """Rows `take` gave out that could not be kept (the spool full, the store away): they go out
        again with the next rows instead of being lost."""
        with self._lock:
            self._rows = [row for batch in batches for row in batch.records] + self._rows


def _write_row(key: _Key, tally: _Tally) -> dict:
    return {"time": tally.time_ns, "tenant": key.tenant, "region": key.region, "principal": key.principal,
            "action": "write", "result": key.result, "reason": key.reason, "transport": key.transport,
            "peer": tally.peer, "format": key.format, "requests": tally.requests, "items": tally.items,
            "refused_items": tally.refused_items, "statement_hash": "", "policy_version": key.policy_version}


def _batch(region: str, records: list[dict]) -> Batch:
    provenance = Provenance("audit", "", "", Caller("internal"), new_batch_id(), time.time_ns(), region=region)
    return Batch(AUDIT_LOG, None, provenance, records=records)
