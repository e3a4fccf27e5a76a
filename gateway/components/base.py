"""What a component declares: its config model, its formats, and what it runs.

A component is one way data arrives (OTLP, remote write, Zipkin, JSON lines,
syslog, scrape, probes). Like a Collector receiver it is built from one
declaration, `Component`, and registered with one line in
`gateway.components`. Its folder holds `config.py` (the config model, which
becomes `receivers.<name>` or `pollers.<name>` in the gateway's config), and
the transport or poller code. The mapping of its payloads into the schema
lives in `adapters/`, pure and testable without sockets.

A `Format` is one kind of payload a component hands the pipeline: how to
decode it, which adapter maps it, and which table its rows fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from telemetry_gateway.adapters.base import AdaptContext, AdaptResult
from telemetry_gateway.gateway.config_base import Model
from telemetry_gateway.schema import Table

if TYPE_CHECKING:
    from telemetry_gateway.gateway.tenants import TenantState


@dataclass(frozen=True)
class Format:
    name: str                   # registry key, the `format` label and `ingest_log.format`
    signal: str                 # metrics, logs or traces: the OTLP response a client expects
    source_kind: str            # the rows' `source_kind`
    message: str                # what one request is called in error messages
    noun: str                   # what one item is called in partial-success messages
    table: Table | None         # the table the adapter fills; None when only stages derive rows (spans)
    decode: Callable[[Any], Any]
    adapt: Callable[[Any, AdaptContext, "TenantState"], AdaptResult]
    # Request -> `spans` rows adapter, for formats whose spans may be stored (apm.store_spans).
    span_rows: Callable | None = None
    # Memory a payload stands for, for the memory limiter.
    size: Callable[[Any], int] = len
    # Its adapter reads nothing but the tenant's attribute sets, so a listener worker may run it and hand
    # over finished rows (`gateway.adapting`).
    in_workers: bool = False


@dataclass(frozen=True)
class Component:
    name: str                              # config key: <section>.<name>
    section: str                           # receivers or pollers
    config: type[Model]
    formats: tuple[Format, ...] = ()
    # Builds what the component runs (a listener or a poller) from its config;
    # None for components that only add routes to the shared HTTP listener.
    service: Callable[..., Any] | None = None
    # Routes this component adds to the shared HTTP listener (receivers.otlp.http).
    http_routes: Callable[..., list] | None = None
