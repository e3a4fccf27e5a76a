"""The gateway's own metrics, served as Prometheus text on the admin /metrics.

Labels are bounded: format, tenant, stage, region, table and reason codes,
never anything a client chooses freely.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()


class SelfMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._accepted = Counter("gateway_accepted_total", "Items kept after the adapter and finalize stages.",
                                 ["format", "tenant"], registry=r)
        self._rejected = Counter("gateway_rejected_total", "Items refused (partial success or whole request), by reason code.",
                                 ["format", "tenant", "reason"], registry=r)
        self._dropped = Counter("gateway_dropped_total", "Rows a processing stage removed.", ["format", "tenant", "stage"],
                                registry=r)
        self._derived = Counter("gateway_derived_total", "Rows a processing stage derived.",
                                ["format", "tenant", "stage", "table"], registry=r)
        self._requests = Counter("gateway_requests_total", "Requests by transport and outcome.", ["transport", "format", "outcome"], registry=r)
        self._stored = Counter("gateway_stored_total", "Rows inserted into the store.", ["region", "table"], registry=r)
        self._store_errors = Counter("gateway_store_errors_total", "Failed store inserts.", ["region", "table", "error"], registry=r)
        self._latency = Histogram(
            "gateway_batch_insert_seconds", "Time to insert one batch.", ["region", "table"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._depth = Gauge("gateway_queue_rows", "Rows accepted and not yet stored.", ["region", "table"], registry=r)
        self._dead = Counter("gateway_dead_letter_batches_total", "Batches moved to the dead-letter area.", ["region", "table"], registry=r)
        self._dead_rows = Counter("gateway_dead_letter_rows_total", "Rows moved to the dead-letter area.", ["region", "table"], registry=r)
        self.spool_bytes = Gauge("gateway_spool_pending_bytes", "Spool bytes not yet confirmed stored.", registry=r)
        self.spool_cut = Counter("gateway_spool_cut_bytes_total", "Damaged spool bytes skipped at start.", registry=r)
        self.replayed = Counter("gateway_spool_replayed_batches_total", "Batches replayed from the spool at start.", registry=r)
        self._decisions = Counter("gateway_access_decisions_total", "Access decisions by action and result; tenant "
                                  "empty when the caller was not authenticated.", ["action", "result", "tenant"],
                                  registry=r)
        self._policy = Gauge("gateway_policy_info", "1 for the policy version in force.", ["version"], registry=r)
        self._reloads = Counter("gateway_policy_reloads_total", "Policy reloads by result (loaded, refused).",
                                ["result"], registry=r)
        self._handed = Counter("gateway_worker_requests_total", "Requests listener workers handed over, by where "
                               "they were adapted (worker, gateway).", ["format", "adapted_in"], registry=r)
        self.worker_exits = Counter("gateway_worker_exits_total", "Listener workers that exited while the gateway "
                                    "ran (each is started again).", registry=r)

    def accepted(self, format_: str, tenant: str, n: int) -> None:
        if n:
            self._accepted.labels(format_, tenant).inc(n)

    def rejected(self, format_: str, tenant: str, reason: str, n: int) -> None:
        if n:
            self._rejected.labels(format_, tenant, reason).inc(n)

    def dropped(self, format_: str, tenant: str, stage: str, n: int) -> None:
        if n:
            self._dropped.labels(format_, tenant, stage).inc(n)

    def derived(self, format_: str, tenant: str, stage: str, table: str, n: int) -> None:
        if n:
            self._derived.labels(format_, tenant, stage, table).inc(n)

    def handed_over(self, format_: str, adapted_in: str) -> None:
        self._handed.labels(format_, adapted_in).inc()

    def request(self, transport: str, format_: str, outcome: str) -> None:
        self._requests.labels(transport, format_, outcome).inc()

    def stored(self, region: str, table: str, n: int, seconds: float) -> None:
        self._stored.labels(region, table).inc(n)
        self._latency.labels(region, table).observe(seconds)

    def store_failed(self, region: str, table: str, error: str) -> None:
        self._store_errors.labels(region, table, error).inc()

    def queue_depth(self, region: str, table: str, rows: int) -> None:
        self._depth.labels(region, table).set(rows)

    def dead_lettered(self, region: str, table: str, rows: int) -> None:
        self._dead.labels(region, table).inc()
        self._dead_rows.labels(region, table).inc(rows)

    def decided(self, action: str, result: str, tenant: str, n: int = 1) -> None:
        self._decisions.labels(action, result, tenant).inc(n)

    def policy_loaded(self, version: str) -> None:
        self._policy.clear()
        self._policy.labels(version).set(1)
        self._reloads.labels("loaded").inc()

    def policy_refused(self) -> None:
        self._reloads.labels("refused").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
