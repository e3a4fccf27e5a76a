"""Honest accounting: what each request became, on /metrics and in `ingest_log`.

Counted once the sink has kept the request's batches, so a request refused
as a whole (throttled, malformed) counts only as rejected:

* accepted: items kept after the adapter and finalize stages;
* rejected: items refused, by reason code (`adapters.base.REASON_CODES`);
* dropped: rows a processing stage removed, by stage;
* derived: rows a stage made, by stage and table.

Each request also leaves one `ingest_log` row, kept in the same sink call as
its data (the spool acknowledges both or neither), so completeness checks can
read what arrived and what was refused beside the rows themselves. The row is
a record batch (`Batch.records`): spooled as JSON, turned into Arrow once per
insert for every row of the group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from telemetry_gateway.gateway.batch import Batch, new_batch_id
from telemetry_gateway.gateway.self_metrics import SelfMetrics
from telemetry_gateway.gateway.stages import Work
from telemetry_gateway.schema import INGEST_LOG


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


def log_row(work: Work, account: RequestAccount, region: str) -> dict:
    """The request's `ingest_log` row, once its batches are routed."""
    p = work.provenance
    stored: Counter = Counter()
    for batch in work.batches:
        if not batch.hold:  # held RED points are counted when their window is written
            stored[batch.table.name] += batch.rows.num_rows
    return {
        "received_time": p.received_ns, "tenant": p.tenant, "region": region, "format": p.format,
        "source_kind": p.source_kind, "source_id": p.source_id, "transport": p.caller.transport,
        "peer": p.caller.peer, "caller_subject": p.caller.subject, "agent_id": p.agent_id, "sequence": p.sequence,
        "batch_id": p.batch_id, "items": account.accepted + sum(account.rejected.values()),
        "accepted": account.accepted, "rejected": _counts(account.rejected), "flagged": _counts(account.flagged),
        "dropped": _counts(account.dropped),
        "derived": {f"{stage}:{table}": n for (stage, table), n in account.derived.items() if n},
        "stored_rows": _counts(stored),
    }


def _counts(counts: Counter) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(counts.items()) if v}


def log_batch(work: Work, account: RequestAccount, region: str) -> Batch:
    """The request's row as a record batch of its own id (the spool tracks batches by id)."""
    provenance = replace(work.provenance, batch_id=new_batch_id(), region=region)
    return Batch(INGEST_LOG, None, provenance, records=[log_row(work, account, region)])


def count(metrics: SelfMetrics, account: RequestAccount) -> None:
    f, t = account.format, account.tenant
    metrics.accepted(f, t, account.accepted)
    for code, n in account.rejected.items():
        metrics.rejected(f, t, code, n)
    for stage, n in account.dropped.items():
        metrics.dropped(f, t, stage, n)
    for (stage, table), n in account.derived.items():
        metrics.derived(f, t, stage, table, n)
