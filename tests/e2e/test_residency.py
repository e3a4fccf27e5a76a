"""Residency-aware access, end to end: a gateway with TLS, a policy of three regions (eu, us, apac) and
tenants bound to each, driven by real clients (the OTel SDK exporters, raw gRPC with client
certificates, the Collector binary, Prometheus remote write), and attacked."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from telemetry_gateway.gateway.access import new_token
from tests.gateway_process import GatewayProcess, free_port
from tests.receivers.otlp_requests import gauge_request, unique
from tests.tls import CertificateAuthority

pytestmark = pytest.mark.integration

REGIONS = ("eu", "us", "apac")
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


class Site:
    """The gateway under test, its CA, its principals' tokens and certificates, and its policy file."""

    def __init__(self, workdir: Path, workers: int = 0) -> None:
        self.workdir = workdir
        self.ca = CertificateAuthority(workdir / "pki")
        self.server = self.ca.issue("server", "localhost", server=True)
        self.globex_cert = self.ca.issue("globex-agent", "globex-agent", "Globex")
        self.stranger_cert = self.ca.issue("stranger", "stranger", "Nobody")
        self.syslog_cert = self.ca.issue("acme-syslog", "acme-syslog", "Acme")
        self.syslog_port = free_port()
        self.tokens = {name: new_token() for name in
                       ("acme", "initech", "multi", "expired", "analyst", "slo", "ops", "spare", "flood", "umbrella")}
        self.policy_path = workdir / "policy.yaml"
        self.write_policy(self.policy())
        tls = {"cert_file": str(self.server.cert), "key_file": str(self.server.key),
               "client_ca_file": str(self.ca.pem.cert)}
        self.gateway = GatewayProcess(workdir, {
            # gRPC asks for client certificates only when it requires them (grpcio has no optional mode).
            "receivers": {"otlp": {"grpc": {"tls": {**tls, "client_auth": "require"}}, "http": {"tls": tls},
                                   "workers": workers},
                          "syslog": {"tcp": {"enabled": True, "endpoint": f"127.0.0.1:{self.syslog_port}", "tls": tls}}},
            "store": {"regions": {r: {"database": f"telemetry_{r}"} for r in REGIONS}},
            "policy": {"file": str(self.policy_path), "reload_interval": "200ms"},
        })

    def token(self, name: str) -> str:
        return self.tokens[name][0]

    def policy(self) -> dict:
        def holder(name: str, tenants: list[str], roles: list[str], **entry) -> dict:
            return {"tenants": tenants, "roles": roles, "tokens": [{"sha256": self.tokens[name][1], "id": name, **entry}]}

        return {
            "regions": list(REGIONS),
            "tenants": {"acme": {"home_region": "eu"},
                        "globex": {"home_region": "us", "allowed_regions": ["apac"]},
                        "initech": {"home_region": "apac"},
                        "umbrella": {"home_region": "eu"},
                        "flood": {"home_region": "eu", "limits": {"max_series": 20, "requests_per_second": 2,
                                                                   "burst_seconds": 1}}},
            "residency": [
                {"name": "globex-asia", "match": {"tenants": ["globex"], "resource": {"cloud.region": ["ap-southeast-1"]}},
                 "region": "apac"},
                {"name": "german-hosts", "match": {"resource": {"host.country": ["DE"]}}, "forbid": ["us", "apac"]},
            ],
            "principals": {
                "acme-writer": holder("acme", ["acme"], ["ingest"]),
                "initech-writer": holder("initech", ["initech"], ["ingest"]),
                "multi": holder("multi", ["acme", "initech"], ["ingest"]),
                "expired": holder("expired", ["acme"], ["ingest"], expires="2026-01-01T00:00:00Z"),
                "acme-analyst": holder("analyst", ["acme"], ["read_raw"]),
                "globex-slo": holder("slo", ["globex"], ["read_validated"]),
                "ops": holder("ops", ["*"], ["admin"]),
                "spare": holder("spare", ["acme"], ["ingest"]),
                "flooder": holder("flood", ["flood"], ["ingest"]),
                "umbrella-writer": holder("umbrella", ["umbrella"], ["ingest"]),
                "acme-syslog": {"tenants": ["acme"], "roles": ["ingest"], "certificates": ["O=Acme,CN=acme-syslog"]},
                "globex-agent": {"tenants": ["globex"], "roles": ["ingest"],
                                 "certificates": ["O=Globex,CN=globex-agent"]},
            },
        }

    def write_policy(self, policy: dict) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(policy))
        os.replace(tmp, self.policy_path)

    def context(self, client=None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.pem.cert))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context

    def post(self, body: bytes, headers: dict, client=None, answer_headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.gateway.http_url + "/v1/metrics", data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context(client)) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            if answer_headers is not None:
                answer_headers.update(exc.headers)
            return exc.code, exc.read()

    def rows(self, sql: str, region: str) -> list[dict]:
        return self.gateway.rows(sql, region)

    def read(self, token: str, sql: str, region: str | None = None) -> tuple[int, str]:
        try:
            return 200, self.gateway.query_raw(sql, "TSV", token=token, region=region).decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "two-workers"])
def site(request, tmp_path_factory):
    """Every attack and rule, with the listeners in the gateway process and in listener workers: in
    workers the caller's certificate and credentials cross to the gateway process, which decides."""
    site = Site(tmp_path_factory.mktemp("residency"), request.param)
    site.gateway.start()
    yield site
    site.gateway.stop()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def gauge(service: str, resource: dict | None = None, n: int = 1) -> bytes:
    request = gauge_request(service, [{"value": float(i)} for i in range(n)])
    for key, value in (resource or {}).items():
        request.resource_metrics[0].resource.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


def where(service: str) -> str:
    return f"SELECT tenant, region, count() AS n FROM metric_points WHERE service_name = '{service}' GROUP BY tenant, region"


def placed(site: Site, service: str, expect: dict[str, int], timeout: float = 30) -> dict[str, list]:
    """Rows of a service in every region (read as admin), once the expected regions hold them."""
    deadline = time.monotonic() + timeout
    while True:
        found = {r: site.rows(where(service), r) for r in REGIONS}
        counts = {r: sum(int(x["n"]) for x in rows) for r, rows in found.items()}
        if all(counts[r] >= n for r, n in expect.items()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_sdk_exporters_with_tokens_write_to_their_tenants_home_region_only(site, monkeypatch):
    # requests lets these override the exporter's own certificate_file (the session's verify).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    service = unique("sdk")
    http = HttpMetricExporter(endpoint=site.gateway.http_url + "/v1/metrics", certificate_file=str(site.ca.pem.cert),
                              headers=bearer(site.token("acme")))
    ca = site.ca.pem.cert.read_bytes()
    cert, key = site.stranger_cert.read()  # the listener requires one; the token names the principal
    grpc_exporter = GrpcMetricExporter(endpoint=f"localhost:{site.gateway.grpc_port}",
                                       credentials=grpc.ssl_channel_credentials(ca, key, cert),
                                       headers={"authorization": f"Bearer {site.token('initech')}"})
    for exporter, name in ((http, "acme"), (grpc_exporter, "initech")):
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service}))
        provider.get_meter("e2e").create_counter(f"{name}.orders").add(3, {"tenant": "globex"})
        assert provider.force_flush()
        provider.shutdown()
    found = placed(site, service, {"eu": 1, "apac": 1})
    # Each provider exports at the flush and again at shutdown (cumulative): one point or two.
    assert [(r["tenant"], r["region"]) for r in found["eu"]] == [("acme", "eu")]
    assert [(r["tenant"], r["region"]) for r in found["apac"]] == [("initech", "apac")]
    assert found["us"] == []


def test_client_certificate_names_the_principal_and_residency_rules_split_and_refuse_rows(site):
    service = unique("cert")
    request = gauge_request(service, [{"value": 1.0}])
    for resource in ({"cloud.region": "ap-southeast-1"}, {"cloud.region": "us-east-1"}, {"host.country": "DE"}):
        rm = request.resource_metrics.add()
        rm.CopyFrom(request.resource_metrics[0])
        for key, value in resource.items():
            rm.resource.attributes.add(key=key).value.string_value = value
    del request.resource_metrics[0]
    cert, key = site.globex_cert.read()
    credentials = grpc.ssl_channel_credentials(site.ca.pem.cert.read_bytes(), key, cert)
    with grpc.secure_channel(f"localhost:{site.gateway.grpc_port}", credentials) as channel:
        export = channel.unary_unary(EXPORT)
        answer = ExportMetricsServiceResponse.FromString(export(request.SerializeToString(), timeout=30))
    assert answer.partial_success.rejected_data_points == 1
    assert "residency rule german-hosts forbids region us" in answer.partial_success.error_message
    found = placed(site, service, {"apac": 1, "us": 1})
    assert found["apac"] == [{"tenant": "globex", "region": "apac", "n": 1}]
    assert found["us"] == [{"tenant": "globex", "region": "us", "n": 1}]
    assert found["eu"] == []


def test_a_certificate_bound_to_no_principal_and_a_missing_token_are_unauthenticated(site):
    with grpc.secure_channel(f"localhost:{site.gateway.grpc_port}",
                             grpc.ssl_channel_credentials(site.ca.pem.cert.read_bytes())) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(EXPORT)(gauge("x"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # no client certificate: refused in the handshake
    cert, key = site.stranger_cert.read()
    credentials = grpc.ssl_channel_credentials(site.ca.pem.cert.read_bytes(), key, cert)
    with grpc.secure_channel(f"localhost:{site.gateway.grpc_port}", credentials) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(EXPORT)(gauge("x"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not bound to any principal" in caught.value.details()
    status, body = site.post(gauge("x"), {})
    assert status == 401 and b"credentials are required" in body


ATTACKS = {
    "forged token": ({"Authorization": "Bearer tgw_forged"}, 401, b"not valid"),
    "expired token": ("expired", 401, b"expired"),
    "another tenant in X-Scope-OrgID": ("acme+globex", 403, b"may not write to the tenant"),
    "a tenant that does not exist": ("acme+nosuch", 403, b"may not write to the tenant"),
    "several tenants, none named": ("multi", 403, b"name one in X-Scope-OrgID"),
    "a reader writing": ("analyst", 403, b"no ingest role"),
    "basic auth": ({"Authorization": "Basic YWNtZTphY21l"}, 401, b"credentials are required"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_write_attacks_are_refused_with_the_right_status_and_store_nothing(site, attack):
    spec, status, words = ATTACKS[attack]
    if isinstance(spec, dict):
        headers = spec
    else:
        name, _, tenant = spec.partition("+")
        headers = {**bearer(site.token(name)), **({"X-Scope-OrgID": tenant} if tenant else {})}
    service = unique("attack")
    got, body = site.post(gauge(service), headers)
    assert (got, words in body) == (status, True), body
    if attack == "another tenant in X-Scope-OrgID":
        _, other = site.post(gauge(service), {**bearer(site.token("acme")), "X-Scope-OrgID": "nosuch"})
        assert body == other  # an answer does not tell whether another tenant exists
    assert all(site.rows(where(service), r) == [] for r in REGIONS)


def test_a_payload_claiming_another_tenant_or_region_changes_neither(site):
    service = unique("claim")
    body = gauge(service, {"tenant": "globex", "region": "us", "cloud.region": "ap-southeast-1"})
    status, _ = site.post(body, {**bearer(site.token("multi")), "X-Scope-OrgID": "acme"})
    assert status == 200
    found = placed(site, service, {"eu": 1})
    assert found == {"eu": [{"tenant": "acme", "region": "eu", "n": 1}], "us": [], "apac": []}


def test_plain_http_to_a_tls_listener_gets_no_data_in(site):
    request = urllib.request.Request(site.gateway.http_url.replace("https", "http") + "/v1/metrics", data=gauge("x"),
                                     headers={"Content-Type": "application/x-protobuf", **bearer(site.token("acme"))})
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(request, timeout=10).read()


def test_readers_see_their_tenants_rows_in_their_regions_and_nothing_else(site):
    service = unique("read")
    assert site.post(gauge(service, n=3), bearer(site.token("acme")))[0] == 200
    assert site.post(gauge(service, n=2), {**bearer(site.token("multi")), "X-Scope-OrgID": "initech"})[0] == 200
    placed(site, service, {"eu": 3, "apac": 2})
    count = f"SELECT count() FROM metric_points WHERE service_name = '{service}'"
    analyst = site.token("analyst")
    assert site.read(analyst, count) == (200, "3\n")  # its tenant's home region when none is named
    assert site.read(analyst, count + " AND tenant = 'initech'", "eu") == (200, "0\n")
    assert site.read(analyst, count, "apac")[0] == 403
    assert site.read(analyst, "SELECT * FROM system.tables", "eu")[0] == 403
    assert site.read(analyst, "SELECT count() FROM telemetry_apac.samples", "eu")[0] == 403
    assert site.read(site.token("slo"), "SELECT count() FROM samples")[0] == 403  # read_validated: views only
    assert site.read(site.token("slo"), count) == (200, "0\n")
    assert site.read(site.token("acme"), count)[0] == 403  # a writer may not read
    assert site.read("tgw_forged", count)[0] == 401
    assert site.read(site.token("ops"), count, "apac") == (200, "2\n")


def test_decisions_are_audited_in_the_store_and_on_metrics(site):
    service = unique("audit")
    site.post(gauge(service), bearer("tgw_forged"))
    site.post(gauge(service), bearer(site.token("acme")))
    site.read(site.token("analyst"), "SELECT * FROM system.tables", "eu")
    sql = ("SELECT action, result, principal, tenant, region, reason, policy_version FROM audit_log "
           "ORDER BY time")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = [row for r in REGIONS for row in site.rows(sql, r)]  # refusals with no region: the first region
        kinds = {(r["action"], r["result"], r["principal"]) for r in rows}
        if {("write", "refused", ""), ("write", "allowed", "acme-writer"), ("read", "refused", "acme-analyst")} <= kinds:
            break
        time.sleep(0.5)
    assert ("write", "allowed", "acme-writer") in kinds and ("read", "refused", "acme-analyst") in kinds
    refused = [r for r in rows if r["action"] == "write" and r["result"] == "refused"]
    assert refused, rows
    assert "the bearer token is not valid" in {r["reason"] for r in refused} and all(r["reason"] for r in refused)
    assert all(len(r["policy_version"]) == 12 for r in rows)
    text = "\n".join(json.dumps(r) for r in rows)
    assert all(token not in text for token, _ in site.tokens.values())  # never a secret
    assert site.gateway.metric('gateway_access_decisions_total{action="write",result="refused",tenant=""}') >= 1


def collector_config(site: Site, log_file: Path, service: str, credentials: str) -> dict:
    """filelog -> otlphttp (the only exporter this Collector build has) with a token header, or with a
    client certificate."""
    tls = {"ca_file": str(site.ca.pem.cert)}
    if credentials == "token":
        exporter = {"endpoint": site.gateway.http_url, "headers": {"Authorization": f"Bearer {site.token('initech')}"},
                    "tls": tls}
    else:
        exporter = {"endpoint": site.gateway.http_url,
                    "tls": {**tls, "cert_file": str(site.globex_cert.cert), "key_file": str(site.globex_cert.key)}}
    name = "otlphttp"
    return {
        "receivers": {"filelog": {"include": [str(log_file)], "start_at": "beginning",
                                  "resource": {"service.name": service}}},
        "exporters": {name: exporter},
        "service": {"pipelines": {"logs": {"receivers": ["filelog"], "exporters": [name]}},
                    "telemetry": {"metrics": {"level": "none"}}},
    }


@pytest.mark.parametrize("credentials,tenant,region", [("token", "initech", "apac"), ("certificate", "globex", "us")])
def test_the_collector_binary_sends_with_a_token_header_or_a_client_certificate(site, tmp_path, credentials, tenant,
                                                                                region):
    from tests.e2e.test_collector import BINARY

    service = unique("collector")
    log_file = tmp_path / "app.log"
    log_file.write_text("".join(f"line {i}\n" for i in range(5)))
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(collector_config(site, log_file, service, credentials)))
    os.chmod(BINARY, 0o755)
    collector = subprocess.Popen([str(BINARY), "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sql = f"SELECT tenant, region FROM log_records WHERE service_name = '{service}'"
    try:
        rows = site.gateway.wait_rows(sql, 5, timeout=60, region=region)
    finally:
        collector.terminate()
        output = collector.communicate(timeout=30)[0].decode(errors="replace")
    assert rows == [{"tenant": tenant, "region": region}] * 5, output[-3000:]
    assert all(site.rows(sql, r) == [] for r in REGIONS if r != region)


def test_prometheus_remote_write_with_authorization(site, tmp_path):
    from tests.peers import prometheus

    extra = {"authorization": {"credentials": site.token("acme")}, "tls_config": {"ca_file": str(site.ca.pem.cert)}}
    peer, _ = prometheus(tmp_path, {"self": ["SELF"]}, site.gateway.http_url + "/api/v1/write", remote_write_extra=extra)
    try:
        sql = "SELECT DISTINCT tenant, region FROM metric_points WHERE source_kind = 'remote_write'"
        rows = site.gateway.wait_rows(sql, 1, timeout=60, region="eu")
    finally:
        peer.stop()
    assert rows == [{"tenant": "acme", "region": "eu"}]
    assert site.rows(sql, "us") == [] and site.rows(sql, "apac") == []


def _version(site: Site) -> str:
    for line in site.gateway.metrics_text().splitlines():
        if line.startswith("gateway_policy_info{"):
            return line.split('"')[1]
    return ""


def test_a_policy_reload_under_load_revokes_a_token_and_an_invalid_version_is_refused(site):
    """Writers keep sending with a token every version holds while the policy changes under them:
    every request is answered 200, and the revoked token stops working once the new version is in force."""
    stop, statuses = threading.Event(), []

    def send() -> None:
        while not stop.is_set():
            statuses.append(site.post(gauge(unique("load")), bearer(site.token("acme")))[0])

    writers = [threading.Thread(target=send) for _ in range(3)]
    for w in writers:
        w.start()
    try:
        first = _version(site)
        assert site.post(gauge("spare"), bearer(site.token("spare")))[0] == 200
        policy = site.policy()
        del policy["principals"]["spare"]
        site.write_policy(policy)
        _wait(lambda: _version(site) not in ("", first))
        assert site.post(gauge("spare"), bearer(site.token("spare")))[0] == 401
        second = _version(site)
        refused_before = site.gateway.metric('gateway_policy_reloads_total{result="refused"}')
        site.policy_path.write_text("regions: [eu]\ntenants: {}\n")  # invalid: no tenant, regions unused
        _wait(lambda: site.gateway.metric('gateway_policy_reloads_total{result="refused"}') > refused_before)
        assert _version(site) == second
        assert site.post(gauge("still"), bearer(site.token("acme")))[0] == 200
    finally:
        stop.set()
        for w in writers:
            w.join()
        site.write_policy(site.policy())
    assert statuses and set(statuses) == {200}
    assert "policy change refused" in site.gateway.log()


def _wait(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_tenant_flooding_requests_and_series_is_throttled_and_the_others_are_untouched(site):
    """The flood tenant may keep 20 series and send 2 requests a second; it sends 40 requests of 10 new
    series each, as fast as it can, while acme sends its own. acme keeps every point; the flood gets
    429 with Retry-After, and partial success naming the series limit, never a silent loss."""
    flood_service, acme_service = unique("flood"), unique("calm")
    flood_answers, acme_answers, waits = [], [], []

    def flood(i: int) -> None:
        request = gauge_request(flood_service, [{"value": 1.0, "attrs": {"s": f"{i}-{j}"}} for j in range(10)])
        headers: dict = {}
        status, body = site.post(request.SerializeToString(), bearer(site.token("flood")), answer_headers=headers)
        flood_answers.append((status, ExportMetricsServiceResponse.FromString(body) if status == 200 else body))
        if status == 429:
            waits.append(headers.get("Retry-After"))

    def calm(i: int) -> None:
        request = gauge_request(acme_service, [{"value": 1.0, "attrs": {"s": f"{i}-{j}"}} for j in range(5)])
        acme_answers.append(site.post(request.SerializeToString(), bearer(site.token("acme")))[0])

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(40)]
    threads += [threading.Thread(target=calm, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert acme_answers == [200] * 10
    statuses = [status for status, _ in flood_answers]
    assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}
    assert waits and all(w and int(w) >= 1 for w in waits)
    partial = [a.partial_success for s, a in flood_answers if s == 200 and a.partial_success.rejected_data_points]
    kept = sum(10 - p.rejected_data_points for p in partial) + 10 * sum(
        1 for s, a in flood_answers if s == 200 and not a.partial_success.rejected_data_points)
    assert kept == 20 and all("limit of 20 series" in p.error_message for p in partial)
    found = placed(site, acme_service, {"eu": 50})
    assert found["eu"] == [{"tenant": "acme", "region": "eu", "n": 50}]
    assert placed(site, flood_service, {"eu": 20})["eu"] == [{"tenant": "flood", "region": "eu", "n": 20}]
    audit = "SELECT principal, tenant, reason, sum(requests) AS n FROM audit_log WHERE result = 'refused' " \
            "AND tenant = 'flood' GROUP BY principal, tenant, reason"
    deadline = time.monotonic() + 20  # audit rows are written every 5 s: a burst may span two writes
    while True:
        rows = site.rows(audit, "eu")
        if (rows and rows[0]["n"] >= statuses.count(429)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows == [{"principal": "flooder", "tenant": "flood", "reason": "the tenant is over its rate limit",
                     "n": statuses.count(429)}]


def test_the_admin_listener_over_tls_and_the_cli_reading_as_a_principal(tmp_path):
    """admin.tls: the API answers only over TLS with the configured certificate, and
    `telemetry-gateway sql` reaches it (pinning that certificate), as the admin or as a principal."""
    site = Site(tmp_path)
    gateway = site.gateway
    gateway.reconfigure({"admin": {"tls": {"cert_file": str(site.server.cert), "key_file": str(site.server.key)}}})
    gateway.start()
    try:
        assert site.post(gauge("cli-read"), bearer(site.token("acme")))[0] == 200
        assert site.post(gauge("cli-read"), bearer(site.token("initech")))[0] == 200
        placed(site, "cli-read", {"eu": 1, "apac": 1})
        with urllib.request.urlopen(gateway.admin_url + "/healthz", context=site.context()) as answer:
            assert answer.status == 200  # verified against the test CA
        with pytest.raises(OSError):
            urllib.request.urlopen(gateway.admin_url.replace("https", "http") + "/healthz", timeout=5).read()
        cli = [sys.executable, "-m", "telemetry_gateway.gateway.cli", "sql", "--config", str(gateway.config_path),
               "--format", "TSV"]
        count = "SELECT count() FROM metric_points WHERE service_name = 'cli-read'"
        env = {k: v for k, v in os.environ.items() if k != "TELEMETRY_GATEWAY_TOKEN"}
        as_admin = subprocess.run(cli + ["--region", "apac", count], capture_output=True, text=True, env=env)
        assert as_admin.stdout == "1\n", as_admin.stderr
        analyst = dict(env, TELEMETRY_GATEWAY_TOKEN=site.token("analyst"))
        assert subprocess.run(cli + [count], capture_output=True, text=True, env=analyst).stdout == "1\n"
        refused = subprocess.run(cli + ["--region", "apac", count], capture_output=True, text=True, env=analyst)
        assert refused.returncode != 0 and "may not read that region" in refused.stderr
    finally:
        gateway.stop()


@pytest.mark.parametrize("path,content_type,body", [
    ("/v1/logs/jsonl", "application/x-ndjson", b'{"message": "hello"}\n'),
    ("/api/v2/spans", "application/json", b"[]"),
    ("/api/v1/write", "application/x-protobuf", b""),
])
def test_every_http_route_asks_for_credentials(site, path, content_type, body):
    request = urllib.request.Request(site.gateway.http_url + path, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30, context=site.context())
    assert caught.value.code == 401


def test_json_lines_with_a_token_land_in_the_tenants_region(site):
    service = unique("jsonl")
    line = json.dumps({"message": "hello", "service.name": service, "time": time.time()}).encode() + b"\n"
    request = urllib.request.Request(site.gateway.http_url + "/v1/logs/jsonl", data=line * 3, method="POST",
                                     headers={"Content-Type": "application/x-ndjson", **bearer(site.token("initech"))})
    with urllib.request.urlopen(request, timeout=30, context=site.context()) as answer:
        assert answer.status == 200
    sql = f"SELECT tenant, region FROM log_records WHERE service_name = '{service}'"
    assert site.gateway.wait_rows(sql, 3, region="apac") == [{"tenant": "initech", "region": "apac"}] * 3
    assert site.rows(sql, "eu") == [] and site.rows(sql, "us") == []


def test_another_tenants_identical_request_never_suppresses_or_overwrites_data(site):
    """Byte-identical requests from two tenants of one region (and a replay by one of them): the store
    de-duplicates inserts by the gateway's own batch ids, never by content or a client's id, so each
    tenant keeps its rows."""
    service = unique("replay")
    body = gauge(service, n=3)
    for token in ("acme", "umbrella", "acme"):
        assert site.post(body, {**bearer(site.token(token)), "X-Request-Id": "same", "Idempotency-Key": "same"})[0] == 200
    found = placed(site, service, {"eu": 9})
    assert sorted((r["tenant"], r["n"]) for r in found["eu"]) == [("acme", 6), ("umbrella", 3)]


@pytest.mark.parametrize("batch_id", ["../../policy", "..%2F..%2Fpolicy", "/etc/passwd", "a" * 15 + "/.."])
def test_redrive_ids_cannot_name_files_outside_the_dead_letter_area(site, batch_id):
    request = urllib.request.Request(site.gateway.admin_url + "/api/v1/deadletter/redrive",
                                     data=json.dumps({"ids": [batch_id]}).encode(), headers=bearer(site.token("ops")))
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read()) == {batch_id: f"error: not a batch id: {batch_id!r}"}
    assert site.policy_path.exists()


def test_redrive_needs_the_admin_role(site):
    request = urllib.request.Request(site.gateway.admin_url + "/api/v1/deadletter/redrive",
                                     data=json.dumps({"ids": []}).encode(), headers=bearer(site.token("analyst")))
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 403


def _syslog_over_tls(site: Site, client, messages: list[str]) -> None:
    import socket

    context = site.context(client)
    with socket.create_connection(("127.0.0.1", site.syslog_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            for message in messages:
                frame = message.encode()
                tls.sendall(b"%d %s" % (len(frame), frame))  # RFC 5425 octet counting
            # Close as senders do: close_notify, then wait for the gateway's. Closing the socket with the
            # server's session tickets unread would reset the connection and cut what it had not read yet.
            tls.unwrap()


def test_syslog_over_tls_takes_its_principal_from_the_client_certificate(site):
    app = unique("sysl")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"<14>1 {stamp} host1 {app} 1 - - message {i}" for i in range(3)]
    _syslog_over_tls(site, site.syslog_cert, lines)
    _syslog_over_tls(site, site.stranger_cert, [f"<14>1 {stamp} host1 {app}-stranger 1 - - refused"])
    sql = f"SELECT tenant, region FROM log_records WHERE service_name = '{app}'"
    assert site.gateway.wait_rows(sql, 3, region="eu") == [{"tenant": "acme", "region": "eu"}] * 3
    time.sleep(1)
    stranger = f"SELECT count() AS n FROM log_records WHERE service_name = '{app}-stranger'"
    assert all(site.rows(stranger, r) == [{"n": 0}] for r in REGIONS)
    assert site.gateway.metric('gateway_access_decisions_total{action="write",result="refused",tenant=""}') >= 1


def test_sighup_reloads_the_policy_at_once(tmp_path):
    site = Site(tmp_path)
    site.gateway.reconfigure({"policy": {"reload_interval": "1h"}})  # only the signal can reload it
    site.gateway.start()
    try:
        first = _version(site)
        policy = site.policy()
        del policy["principals"]["spare"]
        site.write_policy(policy)
        time.sleep(1)
        assert _version(site) == first and site.post(gauge("hup"), bearer(site.token("spare")))[0] == 200
        site.gateway.proc.send_signal(signal.SIGHUP)
        _wait(lambda: _version(site) not in ("", first))
        assert site.post(gauge("hup"), bearer(site.token("spare")))[0] == 401
        assert site.gateway.proc.poll() is None
    finally:
        site.gateway.stop()


def test_a_real_rsyslog_forwards_over_tls_with_its_client_certificate(site, tmp_path):
    """rsyslog's omfwd with the OpenSSL stream driver (RFC 5425), verifying the gateway's certificate and
    presenting one the policy binds to a principal of tenant acme."""
    from tests.e2e.test_syslog import RSYSLOGD

    in_port, app = free_port(), unique("rsys")
    (tmp_path / "spool").mkdir()
    config = tmp_path / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{tmp_path / "spool"}" DefaultNetstreamDriverCAFile="{site.ca.pem.cert}" '
        f'DefaultNetstreamDriverCertFile="{site.syslog_cert.cert}" DefaultNetstreamDriverKeyFile="{site.syslog_cert.key}")\n'
        'module(load="imtcp")\n'
        f'input(type="imtcp" port="{in_port}" address="127.0.0.1")\n'
        f'*.* action(type="omfwd" target="localhost" port="{site.syslog_port}" protocol="tcp" '
        'StreamDriver="ossl" StreamDriverMode="1" StreamDriverAuthMode="x509/name" '
        'StreamDriverPermittedPeers="localhost" template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")\n')
    log = tmp_path / "rsyslog.log"
    rsyslog = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslog.pid")],
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _listening(in_port))
        import socket

        with socket.create_connection(("127.0.0.1", in_port)) as sock:
            for i in range(3):
                sock.sendall(f"<14>{time.strftime('%b %d %H:%M:%S', time.gmtime())} web01 {app}[7]: line {i}\n".encode())
        sql = f"SELECT tenant, region FROM log_records WHERE service_name = '{app}'"
        rows = site.gateway.wait_rows(sql, 3, timeout=30, region="eu")
    finally:
        rsyslog.terminate()
        rsyslog.wait(10)
    assert rows == [{"tenant": "acme", "region": "eu"}] * 3, log.read_text(errors="replace")[-3000:]


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
