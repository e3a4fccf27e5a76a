"""Policy files: what loads, what is refused (every problem at once, named by field), and how a request is decided."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from telemetry_gateway.gateway.access import Access, CompiledPolicy, Credentials, bearer, new_token, token_hash
from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.errors import PermissionDenied, Unauthenticated
from telemetry_gateway.policies.load import PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ["eu", "us", "apac"]
NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


def policy_text(**extra) -> tuple[str, dict[str, str]]:
    """A valid policy and the tokens of its principals."""
    tokens = {name: new_token() for name in ("acme", "both", "analyst", "old", "ops")}
    data = {
        "regions": REGIONS,
        "tenants": {"acme": {"home_region": "eu"}, "globex": {"home_region": "us", "allowed_regions": ["apac"]}},
        "residency": [
            {"name": "globex-asia", "match": {"tenants": ["globex"], "resource": {"cloud.region": ["ap-southeast-1"]}},
             "region": "apac"},
            {"name": "german-hosts", "match": {"resource": {"host.country": ["DE"]}}, "forbid": ["us", "apac"]},
        ],
        "principals": {
            "acme-collector": {"tenants": ["acme"], "roles": ["ingest"], "tokens": [{"sha256": tokens["acme"][1]}]},
            "both": {"tenants": ["acme", "globex"], "roles": ["ingest"], "tokens": [{"sha256": tokens["both"][1]}]},
            "analyst": {"tenants": ["acme"], "roles": ["read_raw"], "tokens": [{"sha256": tokens["analyst"][1]}]},
            "old": {"tenants": ["acme"], "roles": ["ingest"],
                    "tokens": [{"sha256": tokens["old"][1], "expires": "2026-01-01T00:00:00Z"}]},
            "ops": {"tenants": ["*"], "roles": ["admin"], "tokens": [{"sha256": tokens["ops"][1]}]},
            "agent": {"tenants": ["globex"], "roles": ["ingest"], "certificates": ["CN=agent,O=Globex"]},
        },
    }
    data.update(extra)
    return yaml.safe_dump(data), {name: token for name, (token, _) in tokens.items()}


def compiled(**extra) -> tuple[CompiledPolicy, dict[str, str]]:
    text, tokens = policy_text(**extra)
    return CompiledPolicy(parse_policy(text, REGIONS)), tokens


def test_the_example_policy_loads():
    loaded = load_policy(ROOT / "policies" / "example.yaml", REGIONS)
    assert set(loaded.policy.tenants) == {"acme", "globex"} and len(loaded.version) == 12


def test_every_problem_is_listed_at_once_with_its_field():
    text = yaml.safe_dump({
        "regions": ["eu", "mars"],
        "tenants": {"acme": {"home_region": "us", "colour": "red"}},
        "residency": [{"name": "r", "match": {"tenants": ["nobody"]}, "region": "eu", "forbid": ["eu"]}],
        "principals": {"p": {"tenants": ["ghost"], "roles": ["superuser"], "tokens": [{"sha256": "abc"}]}},
    })
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, ["eu", "us"], "p.yaml")
    problems = caught.value.problems
    assert "tenants.acme.colour: unknown key" in problems
    assert any(p.startswith("residency.0: ") and "forbids it" in p for p in problems)
    assert any(p.startswith("principals.p.roles.0: ") for p in problems)
    assert any(p.startswith("principals.p.tokens.0.sha256: ") and "64 hex digits" in p for p in problems)
    assert len(problems) == 4  # field errors first; cross-references are checked once the fields are valid


def test_cross_references_are_checked_against_each_other_and_the_store():
    text, _ = policy_text(regions=["eu", "us", "mars"], pollers_tenant="nobody")
    data = yaml.safe_load(text)
    data["tenants"]["acme"]["allowed_regions"] = ["apac"]
    data["principals"]["ghost"] = {"tenants": ["initech"], "roles": ["ingest"], "certificates": ["CN=agent,O=Globex"]}
    data["principals"]["wide"] = {"tenants": ["*"], "roles": ["ingest"], "certificates": ["CN=wide"]}
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_dump(data), REGIONS)
    problems = caught.value.problems
    assert "regions: 'mars' is not a region of the store (store.regions: eu, us, apac)" in problems
    assert "tenants.acme: region 'apac' is not in regions" in problems
    assert "principals.ghost: tenant 'initech' is not in tenants" in problems
    assert "principals.ghost: certificate 'CN=agent,O=Globex' is also bound to agent" in problems
    assert "principals.wide: only admins may act for every tenant ('*')" in problems
    assert "pollers_tenant: 'nobody' is not in tenants" in problems


def test_tokens_authenticate_by_hash_and_expire():
    policy, tokens = compiled()
    assert policy.authenticate(tokens["acme"], "", NOW)[0] == "acme-collector"
    with pytest.raises(Unauthenticated, match="not valid"):
        policy.authenticate(tokens["acme"] + "x", "", NOW)
    with pytest.raises(Unauthenticated, match="expired"):
        policy.authenticate(tokens["old"], "", NOW)
    assert policy.authenticate("", "CN=agent,O=Globex", NOW)[0] == "agent"
    with pytest.raises(Unauthenticated, match="not bound"):
        policy.authenticate("", "CN=agent,O=Evil", NOW)
    with pytest.raises(Unauthenticated, match="required"):
        policy.authenticate("", "", NOW)
    assert token_hash(tokens["acme"]) not in repr(Credentials(tokens["acme"])) and "<set>" in repr(Credentials("t"))


def test_a_rotated_token_overlaps_its_successor_then_stops():
    old, new = new_token(), new_token()
    entries = [{"sha256": old[1], "expires": (NOW + timedelta(days=1)).isoformat()},
               {"sha256": new[1], "not_before": (NOW - timedelta(hours=1)).isoformat()}]
    policy, _ = compiled(principals={"p": {"tenants": ["acme"], "roles": ["ingest"], "tokens": entries}})
    assert policy.authenticate(old[0], "", NOW)[0] == policy.authenticate(new[0], "", NOW)[0] == "p"
    later = NOW + timedelta(days=2)
    assert policy.authenticate(new[0], "", later)[0] == "p"
    with pytest.raises(Unauthenticated):
        policy.authenticate(old[0], "", later)


def test_the_tenant_comes_from_the_principal_and_the_header_only_picks_among_its_own():
    policy, tokens = compiled()
    access = Access(policy.loaded)
    caller = Caller("http", "10.0.0.1")
    assert access.admit_write(caller, Credentials(tokens["acme"])).tenant == "acme"
    assert access.admit_write(caller, Credentials(tokens["acme"])).caller.token_subject == "acme-collector"
    assert access.admit_write(caller, Credentials(tokens["both"], "globex")).tenant == "globex"
    with pytest.raises(PermissionDenied, match="several tenants"):
        access.admit_write(caller, Credentials(tokens["both"]))
    # Another tenant and a tenant that does not exist get the same answer.
    answers = []
    for asked in ("globex", "initech"):
        with pytest.raises(PermissionDenied) as caught:
            access.admit_write(caller, Credentials(tokens["acme"], asked))
        answers.append(str(caught.value))
    assert answers[0] == answers[1]
    with pytest.raises(PermissionDenied, match="no ingest role"):
        access.admit_write(caller, Credentials(tokens["analyst"]))
    assert access.admit_write(Caller("http", "10.0.0.1", "CN=agent,O=Globex"), None).tenant == "globex"


def test_without_a_policy_everything_is_the_default_tenant():
    admission = Access(None).admit_write(Caller("grpc", "10.0.0.1"), Credentials("anything", "globex"))
    assert admission.tenant == "default" and admission.policy is None


def test_bearer_reads_only_the_bearer_scheme():
    assert bearer("Bearer abc") == bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") == bearer(None) == bearer("") == ""


def rows_with(resources: list[dict]) -> pa.Table:
    column = pa.array([list(r.items()) for r in resources], pa.map_(pa.string(), pa.string()))
    return pa.table({"resource_attributes": column})


def test_rows_are_placed_by_the_first_matching_rule_else_home_and_refused_where_forbidden():
    policy, _ = compiled()
    rows = rows_with([{"cloud.region": "ap-southeast-1"}, {"cloud.region": "us-east-1"}, {},
                      {"cloud.region": "ap-southeast-1", "host.country": "DE"}, {"host.country": "DE"}])
    placement = policy.place("globex", rows)
    assert list(placement.regions) == ["apac", "us", "us", None, None]
    assert {k: list(v) for k, v in placement.refusals.items()} == {
        "residency rule german-hosts forbids region apac": [False, False, False, True, False],
        "residency rule german-hosts forbids region us": [False, False, False, False, True],
    }
    # A tenant whose home is allowed and no resource rule matches: one region for the whole batch.
    assert policy.place("acme", rows_with([{}, {}])).region == "eu"
    assert policy.place("acme", pa.table({"x": [1]})).region == "eu"


def test_a_rule_sending_rows_to_a_region_the_tenant_may_not_use_refuses_them():
    policy, _ = compiled(residency=[{"name": "to-us", "match": {"resource": {"k": ["v"]}}, "region": "us"}])
    placement = policy.place("acme", rows_with([{"k": "v"}, {"k": "w"}]))
    assert list(placement.regions) == [None, "eu"]
    assert list(placement.refusals["region us is not allowed for the tenant"]) == [True, False]


def test_placement_reads_sliced_and_chunked_columns_as_whole_ones():
    policy, _ = compiled()
    resources = [{"cloud.region": "us-east-1"}, {"cloud.region": "ap-southeast-1"}, {}, {"host.country": "DE"}]
    whole = rows_with(resources)
    expected = list(policy.place("globex", whole).regions)
    chunked = pa.table({"resource_attributes": pa.chunked_array(
        [whole.column(0).chunk(0).slice(0, 1), whole.column(0).chunk(0).slice(1)])})
    assert list(policy.place("globex", chunked).regions) == expected == ["us", "apac", "us", None]
    assert list(policy.place("globex", whole.slice(1)).regions) == expected[1:]


def test_a_gateway_with_pollers_refuses_to_start_on_a_policy_without_pollers_tenant(tmp_path):
    from telemetry_gateway.gateway.config import parse_config
    from telemetry_gateway.gateway.service import Gateway

    text, _ = policy_text()
    (tmp_path / "policy.yaml").write_text(text)
    config = parse_config(yaml.safe_dump({
        "store": {"path": str(tmp_path / "data"), "regions": {r: {"database": f"t_{r}"} for r in REGIONS}},
        "policy": {"file": str(tmp_path / "policy.yaml")},
        "pollers": {"scrape": {"targets": [{"url": "http://127.0.0.1:9/metrics"}]}},
    }))
    with pytest.raises(PolicyError, match="pollers_tenant"):
        Gateway(config)
    data = yaml.safe_load(text)
    data["pollers_tenant"] = "acme"
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(data))
    assert Gateway(config).pipeline.access.current.policy.pollers_tenant == "acme"
