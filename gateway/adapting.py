"""Decode, adapt and finalize one payload: the part of the pipeline a listener worker may run.

The gateway process runs it for every format. A listener worker runs it for
formats whose adapter reads nothing but the tenant's attribute sets
(`Format.in_workers`: OTLP metrics and logs), whose rows come out the same
in any process; it hands the gateway process the finished rows (`Adapted`,
Arrow IPC) instead of the payload. Formats that remember between requests
(remote write's metadata, spans for RED series) are adapted in the gateway
process only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa
from google.protobuf.message import DecodeError

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult, Outcome
from telemetry_gateway.gateway.batch import Caller, Provenance, new_batch_id
from telemetry_gateway.gateway.components import Format
from telemetry_gateway.gateway.errors import BadRequest
from telemetry_gateway.gateway.finalize import Finalizer
from telemetry_gateway.gateway.ratelog import RateLimitedLog
from telemetry_gateway.gateway.tenants import TenantState

log = logging.getLogger(__name__)


def decode(fmt: Format, payload, tenant: str, telemetry):
    try:
        return fmt.decode(payload)
    except (DecodeError, ValueError, OverflowError) as exc:
        telemetry.rejected(fmt.name, tenant, "malformed", 1)
        raise BadRequest(f"request body is not a valid {fmt.message}: {exc}") from None


def adapter_failed(fmt: Format, tenant: str, exc: Exception, telemetry, errors: RateLimitedLog) -> BadRequest:
    """An adapter bug: nothing of the request is kept, so a 4xx is safe and final."""
    telemetry.rejected(fmt.name, tenant, "adapter_error", 1)
    errors.log(logging.ERROR, f"adapt-{fmt.name}", "%s could not be adapted: %s: %s",
               fmt.message, type(exc).__name__, exc, exc_info=True)
    return BadRequest(f"the {fmt.message} could not be adapted ({type(exc).__name__}: {exc}); nothing of it "
                      "was kept")


def provenance(fmt: Format, caller: Caller, tenant: str, source_id: str, received_ns: int | None = None) -> Provenance:
    return Provenance(fmt.name, fmt.source_kind, source_id or f"{fmt.name}:{caller.peer or 'unknown'}", caller,
                      new_batch_id(), time.time_ns() if received_ns is None else received_ns, tenant=tenant)


@dataclass
class Adapted:
    """A payload a listener worker decoded, adapted and finalized: its rows, and what was refused."""

    rows: pa.Table
    outcome: Outcome
    received_ns: int

    def header(self) -> dict:
        return {"received_ns": self.received_ns,
                "rejected": [[code, reason, n] for (code, reason), n in self.outcome.rejected.items()],
                "warned": [[reason, n] for reason, n in self.outcome.warned.items()]}

    def body(self) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.rows.schema) as writer:
            writer.write_table(self.rows)
        return sink.getvalue().to_pybytes()

    @classmethod
    def of(cls, header: dict, body: bytes) -> Adapted:
        outcome = Outcome()
        for code, reason, n in header["rejected"]:
            outcome.reject(code, reason, n)
        for reason, n in header["warned"]:
            outcome.warn(reason, n)
        return cls(pa.ipc.open_stream(body).read_all(), outcome, int(header["received_ns"]))


class WorkerAdapter:
    """A listener worker's decode -> adapt -> finalize, with its own per-tenant attribute sets."""

    def __init__(self, finalizer: Finalizer, tenant_state, telemetry) -> None:
        self.finalizer = finalizer
        self.tenant_state = tenant_state  # tenant -> TenantState
        self.telemetry = telemetry
        self._errors = RateLimitedLog(log)

    def adapt(self, fmt: Format, payload, caller: Caller, tenant: str, source_id: str) -> Adapted:
        request = decode(fmt, payload, tenant, self.telemetry)
        where = provenance(fmt, caller, tenant, source_id)
        state: TenantState = self.tenant_state(tenant)
        try:
            result: AdaptResult = fmt.adapt(request, AdaptContext(where.received_ns, self.finalizer.window), state)
            rows = self.finalizer.finish_all(result, where, fmt.table)
        except Exception as exc:  # noqa: BLE001 - as in the gateway process: refused whole, never half kept
            raise adapter_failed(fmt, tenant, exc, self.telemetry, self._errors) from None
        return Adapted(rows, result.outcome, where.received_ns)
