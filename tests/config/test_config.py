from __future__ import annotations

import types
import typing

import subprocess
import sys
from pathlib import Path

import pytest

from pydantic import BaseModel

from telemetry_gateway.gateway.components import COMPONENTS
from telemetry_gateway.gateway.config import (ConfigError, GatewayConfig, LogMetricConfig, RegionConfig, load_config,
                                              parse_config)

TESTDATA = Path(__file__).parent / "testdata"
ROOT = Path(__file__).resolve().parents[2]


def problems(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(TESTDATA / name)
    return info.value.problems


def test_the_example_config_is_valid_and_matches_the_defaults():
    example = load_config(ROOT / "deploy" / "gateway.example.yaml")
    assert example.model_dump(exclude={"pollers": {"location"}}) == GatewayConfig().model_dump(exclude={"pollers": {"location"}})


def test_defaults_listen_on_localhost_only():
    config = GatewayConfig()
    endpoints = [config.receivers.otlp.grpc.endpoint, config.receivers.otlp.http.endpoint, config.admin.endpoint]
    assert all(e.startswith("127.0.0.1:") for e in endpoints)


def test_every_problem_is_listed_with_its_field():
    assert problems("typos_and_bad_values.yaml") == [
        "receivers.otlp.grpc.endpoint: port out of range in 'localhost:99999'",
        "receivers.otlp.htttp: unknown key",
        "limits.max_age: not a duration: 'fortnight' (use e.g. 250ms, 30s, 5m, 1h, 14d)",
        "limits.max_pending_rows: Input should be greater than 0",
        "store.batch.max_delay: Input should be greater than 0",
        "store.regions.EU: url is required when backend is clickhouse",
        "admin.endpont: unknown key",
        "log_level: Input should be 'debug', 'info', 'warning' or 'error'",
    ]


def test_embedded_regions_need_their_own_database():
    assert problems("two_embedded_regions_one_database.yaml") == [
        "store: embedded regions share one data directory, so each needs its own database"
    ]


def test_environment_variables_fill_secrets(monkeypatch):
    monkeypatch.setenv("GATEWAY_TEST_CH_URL", "http://user:secret@127.0.0.1:8123")
    config = load_config(TESTDATA / "server_region_from_env.yaml")
    assert config.store.regions["eu"].url == "http://user:secret@127.0.0.1:8123"


def test_an_unset_environment_variable_is_a_problem(monkeypatch):
    monkeypatch.delenv("GATEWAY_TEST_CH_URL", raising=False)
    assert "environment variable GATEWAY_TEST_CH_URL is referenced but not set" in problems("server_region_from_env.yaml")


def test_the_top_level_must_be_a_mapping():
    assert problems("not_a_mapping.yaml") == ["the top level must be a mapping"]


def test_check_config_command_exit_codes():
    cli = [sys.executable, "-m", "telemetry_gateway.gateway.cli", "check-config"]
    ok = subprocess.run(cli + [str(ROOT / "deploy" / "gateway.example.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("gateway.example.yaml: ok")
    bad = subprocess.run(cli + [str(TESTDATA / "typos_and_bad_values.yaml")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "8 problem(s)" in bad.stderr and "receivers.otlp.htttp: unknown key" in bad.stderr


def _fields(model, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        path = f"{prefix}{name}"
        # An optional section (`tls: TlsConfig | None`): its keys are documented like any other.
        optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if optional and models:
            annotation = models[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _fields(annotation, path + ".")
        elif name == "regions":
            out += _fields(RegionConfig, path + ".<name>.")
        elif name == "log_metrics":
            out += _fields(LogMetricConfig, path + "[].")
        elif name == "targets":
            out.append(path)
        else:
            out.append(path)
    return out


def test_the_readme_reference_names_every_config_key():
    readme = (ROOT / "README.md").read_text()
    missing = [path for path in _fields(GatewayConfig) if f"| `{path}` |" not in readme]
    assert missing == []


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.name)
def test_every_registered_component_has_its_config_documented(component):
    """A component registered without README docs for its keys fails here, by name."""
    readme = (ROOT / "README.md").read_text()
    keys = _fields(component.config, f"{component.section}.{component.name}.")
    assert keys, f"{component.name} has no config keys"
    assert [k for k in keys if f"| `{k}` |" not in readme] == []


def test_component_sections_are_checked_like_the_rest():
    assert parse_config("receivers:\n  remote_write: {enabled: false}\n").receivers.remote_write.enabled is False
    with pytest.raises(ConfigError) as err:
        parse_config("receivers:\n  zipkin: {enabled: nope}\n  jsonlinez: {}\npollers:\n  scrape: {intervall: 1s}\n")
    problems = "\n".join(err.value.problems)
    assert "receivers.zipkin.enabled" in problems
    assert "receivers.jsonlinez: unknown key" in problems and "pollers.scrape.intervall: unknown key" in problems


def test_scrape_timeout_defaults_as_in_prometheus():
    assert parse_config("pollers:\n  scrape: {interval: 2s}\n").pollers.scrape.timeout == 2.0
    assert parse_config("pollers:\n  scrape: {interval: 1m}\n").pollers.scrape.timeout == 10.0
    with pytest.raises(ConfigError, match="timeout must not exceed interval"):
        parse_config("pollers:\n  scrape: {interval: 2s, timeout: 5s}\n")
