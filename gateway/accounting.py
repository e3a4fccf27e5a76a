"""Honest accounting: what each request became, on /metrics and in `ingest_log`.

Counted once the sink has kept the request's batches, so a request refused
as a whole (throttled, malformed) counts only as rejected:

* accepted: items kept after the adapter and finalize stages;
* rejected: items refused, by reason code (`adapters.base.REASON_CODES`);
* dropped: rows a processing stage removed, by stage;
* derived: rows a stage made, by stage and table.

Each request also leaves one `ingest_log` row, kept with its data in the
same sink call, so completeness checks can read what arrived and what was
refused beside the rows themselves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from telemetry_gateway.gateway.batch import Batch
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.stages import Work
from telemetry_gateway.schema import INGEST_LOG, arrow_schema


@dataclass
class RequestAccount:
    format: str
    tenant: str
    accepted: int
    rejected: Counter   # code -> items
    flagged: Counter    # flag -> items
    dropped: Counter    # stage -> rows
    derived: Counter    # (stage, table) -> rows

    @classmethod
    def of(cls, work: Work) -> RequestAccount:
        p = work.provenance
        return cls(p.format, p.tenant, work.accepted, work.outcome.by_code(), Counter(work.outcome.warned),
                   Counter(work.dropped), Counter(work.derived))


def log_batch(work: Work, account: RequestAccount) -> Batch:
    """The request's `ingest_log` row, routed like its data (its region is the first batch's)."""
    p = work.provenance
    stored: Counter = Counter()
    for batch in work.batches:
        stored[batch.table.name] += batch.rows.num_rows
    row = {
        "received_time": p.received_ns, "tenant": p.tenant, "region": p.region, "format": p.format,
        "source_kind": p.source_kind, "source_id": p.source_id, "transport": p.caller.transport,
        "peer": p.caller.peer, "caller_subject": p.caller.subject, "agent_id": p.agent_id, "sequence": p.sequence,
        "batch_id": p.batch_id, "items": account.accepted + sum(account.rejected.values()),
        "accepted": account.accepted, "rejected": _pairs(account.rejected), "flagged": _pairs(account.flagged),
        "dropped": _pairs(account.dropped),
        "derived": _pairs(Counter({f"{stage}:{table}": n for (stage, table), n in account.derived.items()})),
        "stored_rows": _pairs(stored),
    }
    schema = arrow_schema(INGEST_LOG)
    table = pa.Table.from_pylist([row], schema=schema)
    return Batch(INGEST_LOG, table, p.derived())  # its own batch id: the spool tracks batches by id


def _pairs(counts: Counter) -> list[tuple[str, int]]:
    return sorted((k, int(v)) for k, v in counts.items() if v)


def count(metrics: SelfMetrics, account: RequestAccount) -> None:
    f, t = account.format, account.tenant
    metrics.accepted(f, t, account.accepted)
    for code, n in account.rejected.items():
        metrics.rejected(f, t, code, n)
    for stage, n in account.dropped.items():
        metrics.dropped(f, t, stage, n)
    for (stage, table), n in account.derived.items():
        metrics.derived(f, t, stage, table, n)
