"""The gateway's configuration: one YAML file, validated as a whole.

Every model is frozen and refuses unknown keys. `load_config` reports every
problem at once, each prefixed with the dotted path of its field, so a typo
and a bad value in the same file are both named in one run. `${NAME}` in the
file is replaced by the environment variable NAME (for secrets such as a
ClickHouse password), and refused when NAME is unset.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from telemetry_gateway.gateway.components import COMPONENTS
from telemetry_gateway.gateway.config_base import ConnectionLimits, Endpoint, Model, Seconds, TlsConfig

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _section(name: str, **extra) -> type[Model]:
    """`receivers` or `pollers`: one key per registered component, each with its own config model."""
    fields = {c.name: (c.config, c.config()) for c in COMPONENTS if c.section == name}
    return create_model(f"{name.capitalize()}Config", __base__=Model, **extra, **fields)


ReceiversConfig = _section("receivers")
# `location` is where probes run from: the `probe.location` attribute of probe series.
PollersConfig = _section("pollers", location=(str, Field(default_factory=socket.gethostname)))


class LimitsConfig(Model):
    max_age: Seconds = 14 * 86400.0
    max_future: Seconds = 3600.0
    # Without the spool: rows waiting for the store before receivers throttle.
    max_pending_rows: int = Field(2_000_000, gt=0)
    # Memory held for requests in flight and batches waiting for the store, at
    # which receivers throttle; 0 turns the limiter off.
    max_memory_mib: int = Field(4096, ge=0)
    retry_after: Seconds = 1.0
    # Per item (point, record, series): more attributes, or a longer key or value, refuse the item.
    max_attributes: int = Field(128, gt=0)
    max_attribute_length: int = Field(4096, gt=0)


class BatchConfig(Model):
    # Large inserts: ClickHouse merges every part it makes, so fewer, bigger parts
    # cost less CPU (measured: 400k-row inserts use a third less per point than 100k).
    max_rows: int = Field(400_000, gt=0)
    max_delay: Seconds = 2.0
    # ingest_log gets a small row per request; each insert costs the store a part
    # (measured: 15 ms of CPU) and holds the region's store thread, so its rows wait longer.
    ingest_log_max_delay: Seconds = 10.0


class RetryConfig(Model):
    """Backoff for store inserts: capped, jittered, exponential."""

    initial: Seconds = 0.2
    max: Seconds = 30.0
    multiplier: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.2, ge=0.0, lt=1.0)
    # 0 retries until shutdown (with the spool the data is safe meanwhile).
    max_attempts: int = Field(0, ge=0)


class SpoolConfig(Model):
    enabled: bool = True
    # Default: <store.path>/spool.
    path: Path | None = None
    fsync: Literal["batch", "interval"] = "batch"
    fsync_interval: Seconds = 1.0
    # Bytes accepted and not yet stored; past it receivers throttle.
    max_size_mib: float = Field(1024, gt=0)
    segment_size_mib: float = Field(64, gt=0)


class ShutdownConfig(Model):
    # How long SIGTERM waits for the store; the rest stays in the spool.
    drain_timeout: Seconds = 10.0


class RegionConfig(Model):
    backend: Literal["embedded", "clickhouse"] = "embedded"
    database: str = Field("telemetry", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    url: str | None = None

    @model_validator(mode="after")
    def _url_matches_backend(self) -> RegionConfig:
        if self.backend == "clickhouse" and not self.url:
            raise ValueError("url is required when backend is clickhouse")
        if self.backend == "embedded" and self.url:
            raise ValueError("url is only for backend clickhouse")
        return self


class StoreConfig(Model):
    path: Path = Path("./data")
    retention_days: int = Field(0, ge=0)
    batch: BatchConfig = BatchConfig()
    retry: RetryConfig = RetryConfig()
    regions: dict[str, RegionConfig] = {"default": RegionConfig()}

    @model_validator(mode="after")
    def _regions_valid(self) -> StoreConfig:
        bad = [name for name in self.regions if not _NAME.match(name)]
        if bad:
            raise ValueError(f"region names must be lowercase identifiers: {', '.join(bad)}")
        if not self.regions:
            raise ValueError("at least one region is required")
        embedded = [(r.database, n) for n, r in self.regions.items() if r.backend == "embedded"]
        if len({db for db, _ in embedded}) != len(embedded):
            raise ValueError("embedded regions share one data directory, so each needs its own database")
        return self


class ApmConfig(Model):
    """RED series from spans (OTLP traces, Zipkin)."""

    # Distinct (operation, status class) keys per service; more fold into one overflow series.
    max_series: int = Field(1000, gt=0)
    # A key unseen for this long is forgotten, freeing its place in the service's budget.
    series_idle_timeout: Seconds = 3600.0
    window: Seconds = 10.0
    # A window is written this long after it ends, or after its last span arrived if later;
    # spans for a window already written make a second row flagged `late`.
    lateness: Seconds = 30.0
    # Also keep every span (OTLP, Zipkin) in the `spans` table (RED series are always derived).
    store_spans: bool = False


class LogMetricConfig(Model):
    """A log-to-metric rule (see adapters.log_metrics)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
    preset: Literal["", "nginx_access", "apache_combined", "severity_by_service"] = ""
    service: str = ""
    regex: str = ""
    labels: list[str] = []
    sum: str = ""
    duration: str = ""
    duration_scale: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _regex_compiles(self) -> LogMetricConfig:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"regex does not compile: {exc}") from None
        if not self.preset and not self.regex and "severity" not in self.labels:
            raise ValueError("a rule needs a preset, a regex or the severity label")
        return self


class NormalizeConfig(Model):
    """Shared normalization (adapters.normalize)."""

    # Rescale values to base units (ms -> s, kBy -> By, % -> 1).
    units: bool = True
    # Extra renames on top of the built-in semantic-conventions table.
    metric_names: dict[str, str] = {}
    attribute_names: dict[str, str] = {}
    # Metric name patterns (fnmatch) whose cumulative sums are stored as deltas.
    cumulative_to_delta: list[str] = []
    # YAML/JSON file: services: {<service.name>: {team, tier, environment}}.
    service_catalog: Path | None = None


class QueryConfig(Model):
    """Bounds on every read through the SQL API and `telemetry-gateway sql`."""

    timeout: Seconds = 30.0
    max_memory_mib: int = Field(1024, gt=0)
    max_result_rows: int = Field(1_000_000, gt=0)
    max_result_mib: int = Field(256, gt=0)
    # Reads running at once; more wait for a free slot.
    max_concurrent: int = Field(4, gt=0, le=64)


class AdminConfig(Model):
    endpoint: Endpoint = "127.0.0.1:9480"
    connections: ConnectionLimits = ConnectionLimits(max_connections=64)
    query: QueryConfig = QueryConfig()
    tls: TlsConfig | None = None


class PolicyConfig(Model):
    """The access policy (policies/README.md). Without a file the gateway is open: tenant `default`."""

    file: Path | None = None
    # How often the file is checked for changes; SIGHUP reloads it at once.
    reload_interval: Seconds = 2.0


class GatewayConfig(Model):
    receivers: ReceiversConfig = ReceiversConfig()
    limits: LimitsConfig = LimitsConfig()
    store: StoreConfig = StoreConfig()
    spool: SpoolConfig = SpoolConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    pollers: PollersConfig = PollersConfig()
    apm: ApmConfig = ApmConfig()
    log_metrics: list[LogMetricConfig] = []
    normalize: NormalizeConfig = NormalizeConfig()
    admin: AdminConfig = AdminConfig()
    policy: PolicyConfig = PolicyConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ConfigError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def describe_error(err: dict) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def _expand_env(node: object, problems: list[str]) -> object:
    """Replace ${NAME} in string values (not comments, not keys)."""
    if isinstance(node, dict):
        return {key: _expand_env(value, problems) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_env(value, problems) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.append(f"environment variable {name} is referenced but not set")
            return ""
        return os.environ[name]

    return _ENV.sub(replace, node)


def parse_config(text: str, source: str = "config") -> GatewayConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping"])
    problems: list[str] = []
    data = _expand_env(data, problems)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems += [describe_error(e) for e in exc.errors()]
        config = None
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path | None) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(path))
