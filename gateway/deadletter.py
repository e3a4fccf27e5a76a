"""The dead-letter area: batches the store refused permanently, with the reason.

Layout: `<path>/<batch_id>.arrow` (the rows, Arrow IPC) and
`<path>/<batch_id>.json` (region, table, rows, reason, time, and the tables
that had already taken its share when the rest was refused). The JSON is
written last, so a listed entry always has its rows. A batch loaded for a
redrive leaves out the rows those tables hold. A redriven batch that
is refused again comes back under the id it had, not its new batch id, so the
id a user listed keeps working. `telemetry-gateway
deadletter list` shows them; `deadletter redrive` sends them to the store
again (through the running gateway, or directly when none runs).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from telemetry_gateway.gateway.batch import Batch, Provenance, table_named
from telemetry_gateway.gateway.spool.spool import from_ipc, to_ipc
from telemetry_gateway.schema.layout import not_stored_in

_ID = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class DeadLetter:
    batch_id: str
    region: str
    table: str
    rows: int
    reason: str
    time_ns: int
    provenance: dict = field(default_factory=dict)
    stored_tables: list = field(default_factory=list)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class DeadLetters:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _check(self, batch_id: str) -> str:
        if not _ID.match(batch_id):
            raise KeyError(f"not a batch id: {batch_id!r}")
        return batch_id

    def put(self, batch: Batch, reason: str, stored_tables: frozenset[str] = frozenset()) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        batch_id = self._check(batch.provenance.dead_letter_id or batch.batch_id)
        _write_durably(self.path / f"{batch_id}.arrow", to_ipc(batch.arrow()))
        meta = {"batch_id": batch_id, "region": batch.region, "table": batch.table.name, "rows": batch.num_rows,
                "reason": reason, "time_ns": time.time_ns(), "provenance": batch.provenance.to_meta(),
                "stored_tables": sorted(stored_tables)}
        _write_durably(self.path / f"{batch_id}.json", json.dumps(meta).encode())

    def list(self) -> list[DeadLetter]:
        if not self.path.exists():
            return []
        known = DeadLetter.__dataclass_fields__
        entries = [DeadLetter(**{k: v for k, v in json.loads(p.read_text()).items() if k in known})
                   for p in self.path.glob("*.json")]
        return sorted(entries, key=lambda e: e.time_ns)

    def load(self, batch_id: str) -> Batch:
        batch_id = self._check(batch_id)
        try:
            meta = json.loads((self.path / f"{batch_id}.json").read_text())
        except FileNotFoundError:
            raise KeyError(f"no dead letter {batch_id}") from None
        rows = from_ipc((self.path / f"{batch_id}.arrow").read_bytes())
        if meta.get("stored_tables"):
            rows = not_stored_in(rows, meta["stored_tables"])
        return Batch(table_named(meta["table"]), rows, Provenance.from_meta(meta, meta["region"], batch_id))

    def remove(self, batch_id: str) -> None:
        batch_id = self._check(batch_id)
        (self.path / f"{batch_id}.json").unlink(missing_ok=True)
        (self.path / f"{batch_id}.arrow").unlink(missing_ok=True)
