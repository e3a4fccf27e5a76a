"""What the access policy costs per request and per point: authentication, residency routing, auditing.

    python -m loadtest.access_cost                  # 200 requests of 2000 points, 10 attributes
    python -m loadtest.access_cost --points 100     # small requests: the per-request share shows

In-process and single-threaded, on the load payloads, so the figures are CPU
time of exactly the stages that change, not of the network or the store:

* admit: the receivers' call before a body is read (the policy version, the
  token's SHA-256 and lookup, the tenant; with policies off, nothing to check);
* process: decode, adapt, finalize, the chain and route (with a policy:
  per-row residency placement by a resource attribute, the series budget and
  the audit tally), the same requests and tenant state either way.

Each phase runs over the requests three times and the fastest round counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from loadtest.payloads import metrics_requests


def _policy(path: Path) -> tuple[Path, str]:
    from telemetry_gateway.gateway.access import new_token

    token, digest = new_token()
    policy = {
        "regions": ["eu", "us"],
        "tenants": {"acme": {"home_region": "eu", "allowed_regions": ["us"], "limits": {"max_series": 10_000_000}}},
        "residency": [{"name": "hosts-in-us", "match": {"resource": {"host.name": ["host-1", "host-3"]}},
                       "region": "us"},
                      {"name": "german-hosts", "match": {"resource": {"host.country": ["DE"]}}, "forbid": ["us"]}],
        "principals": {f"p{i}": {"tenants": ["acme"], "roles": ["ingest"],
                                 "tokens": [{"sha256": digest if i == 0 else f"{i:064x}"}]} for i in range(100)},
    }
    file = path / "policy.yaml"
    file.write_text(yaml.safe_dump(policy))
    return file, token


def _pipeline(workdir: Path, policy_file: Path | None):
    from telemetry_gateway.gateway.config import GatewayConfig
    from telemetry_gateway.gateway.pipeline import IngestPipeline
    from telemetry_gateway.gateway.self_metrics import SelfMetrics
    from telemetry_gateway.policies.load import load_policy

    config = GatewayConfig.model_validate({"store": {"path": str(workdir), "regions": {"eu": {}, "us": {"database": "us"}}}})
    loaded = load_policy(policy_file, ["eu", "us"]) if policy_file else None
    return IngestPipeline(config, stores=None, telemetry=SelfMetrics(), policy=loaded)


def _best(rounds: int, fn) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def measure(requests: list[bytes], points: int, policy: bool, workdir: Path) -> tuple[float, float]:
    from telemetry_gateway.gateway.access import Credentials
    from telemetry_gateway.gateway.batch import Caller
    from telemetry_gateway.gateway.components import FORMATS

    workdir.mkdir(parents=True, exist_ok=True)
    policy_file, token = _policy(workdir) if policy else (None, "")
    pipeline = _pipeline(workdir, policy_file)
    fmt = FORMATS["otlp_metrics"]
    caller, credentials = Caller("http", "10.0.0.1"), Credentials(token)
    admissions = []

    def admit() -> None:
        admissions[:] = [pipeline.admit("otlp_metrics", caller, credentials) for _ in requests]

    def process() -> None:
        for payload, admission in zip(requests, admissions):
            pipeline._process(fmt, payload, admission, "bench")

    admit_s = _best(3, admit)
    process()  # the tenant's attribute sets and series budget warm, as in a running gateway
    process_s = _best(3, process)
    pipeline.audit.take("eu")
    return admit_s, process_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args()
    requests = metrics_requests(args.requests, args.points, series=20_000)
    n_points = args.requests * args.points
    with tempfile.TemporaryDirectory() as tmp:
        off = measure(requests, args.points, False, Path(tmp) / "off")
        on = measure(requests, args.points, True, Path(tmp) / "on")
    print(f"{args.requests} requests of {args.points} points, 10 attributes, 20k series; CPU seconds, best of 3")
    print(f"{'':28s} {'policies off':>14s} {'policies on':>14s} {'added':>12s}")
    for label, a, b in (("admit, per request", off[0], on[0]), ("process, per request", off[1], on[1])):
        per_request = (a / args.requests * 1e6, b / args.requests * 1e6)
        print(f"{label:28s} {per_request[0]:11.1f} us {per_request[1]:11.1f} us {per_request[1] - per_request[0]:9.1f} us")
    total_off, total_on = sum(off), sum(on)
    print(f"{'all, per point':28s} {total_off / n_points * 1e6:11.3f} us {total_on / n_points * 1e6:11.3f} us "
          f"{(total_on - total_off) / n_points * 1e6:9.3f} us ({(total_on / total_off - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
