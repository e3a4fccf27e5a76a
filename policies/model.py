"""The access policy: who may send and read what, and where each tenant's data may live.

One YAML file (see `policies/example.yaml`), validated as a whole: every
problem is listed at once, each with the dotted path of its field, and the
references between sections (a principal's tenant, a tenant's regions, a
rule's destination) are checked against each other and against the regions
the gateway's store configures.

    regions      names of the store's regions this policy may send data to
    tenants      home region, allowed regions, per-tenant limits
    residency    rules matching rows by tenant or resource attribute: where
                 they must go (`region`) and where they may never go (`forbid`)
    principals   token holders and certificate subjects, bound to tenants and roles

Regions are declared with their store in the gateway config (`store.regions`,
which can hold secrets through ${ENV}); the policy names them.

Bearer tokens are stored as SHA-256 hashes, never in clear (`gateway.access`
says why hashes rather than signed tokens).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from telemetry_gateway.gateway.config_base import Model

ROLES = ("ingest", "read_validated", "read_raw", "admin")
Role = Literal["ingest", "read_validated", "read_raw", "admin"]
ANY_TENANT = "*"
_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TenantLimits(Model):
    """0 means no limit."""

    # Distinct metric series the tenant may have; points of further new series are refused.
    max_series: int = Field(0, ge=0)
    # Items (points, records, spans) per second, averaged; a burst of `burst_seconds` worth is allowed.
    items_per_second: float = Field(0, ge=0)
    requests_per_second: float = Field(0, ge=0)
    burst_seconds: float = Field(2.0, gt=0)
    # Part of limits.max_memory_mib the tenant's requests in flight may hold at once.
    memory_share: float = Field(1.0, gt=0, le=1)


class TenantPolicy(Model):
    home_region: str
    # Regions the tenant's data may enter; the home region is always one of them.
    allowed_regions: list[str] = []
    limits: TenantLimits = TenantLimits()

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(self.allowed_regions) | {self.home_region}


class ResidencyMatch(Model):
    """Every condition given must hold: the tenant is one of `tenants` (when given), and for each
    attribute of `resource`, the row's resource attribute has one of the listed values."""

    tenants: list[str] = []
    resource: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _not_empty(self) -> ResidencyMatch:
        if not self.tenants and not self.resource:
            raise ValueError("a match needs tenants or resource attributes")
        if any(not values for values in self.resource.values()):
            raise ValueError("each resource attribute needs at least one value")
        return self


class ResidencyRule(Model):
    name: str = Field(pattern=_NAME)
    match: ResidencyMatch
    # Rows that match go to this region (the first rule with a region wins).
    region: str | None = None
    # Rows that match may never enter these regions; a row whose region is forbidden is refused.
    forbid: list[str] = []

    @model_validator(mode="after")
    def _does_something(self) -> ResidencyRule:
        if self.region is None and not self.forbid:
            raise ValueError("a rule needs a region, a forbid list, or both")
        if self.region is not None and self.region in self.forbid:
            raise ValueError(f"the rule sends rows to {self.region!r} and forbids it")
        return self


class TokenEntry(Model):
    """One bearer token of a principal. Several may be valid at once, so a token is rotated by adding
    the new one, moving clients over, and removing the old one."""

    sha256: str
    # A name for logs and audit rows (the token itself is never logged).
    id: str = ""
    not_before: AwareDatetime | None = None
    expires: AwareDatetime | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower().removeprefix("sha256:")
        if not _SHA256.match(value):
            raise ValueError("must be the 64 hex digits of the token's SHA-256 (telemetry-gateway policy token)")
        return value

    def valid_at(self, when: datetime) -> bool:
        return (self.not_before is None or when >= self.not_before) and (self.expires is None or when < self.expires)


class Principal(Model):
    # Tenants the principal acts for; "*" is every tenant (for admins).
    tenants: list[str] = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    tokens: list[TokenEntry] = []
    # TLS client certificate subjects, RFC 4514, as `openssl x509 -subject -nameopt RFC2253` prints them.
    certificates: list[str] = []

    @model_validator(mode="after")
    def _has_credentials(self) -> Principal:
        if not self.tokens and not self.certificates:
            raise ValueError("a principal needs tokens or certificates")
        return self


class Policy(Model):
    regions: list[str] = Field(min_length=1)
    tenants: dict[str, TenantPolicy] = Field(min_length=1)
    residency: list[ResidencyRule] = []
    principals: dict[str, Principal] = {}
    # Tenant of what the gateway's own pollers (scrape, probes) collect.
    pollers_tenant: str | None = None

    def problems(self, store_regions: list[str]) -> list[str]:
        """Cross-references that field validation cannot see; empty when consistent."""
        problems = [f"regions: {r!r} is not a region of the store (store.regions: {', '.join(store_regions)})"
                    for r in self.regions if r not in store_regions]
        problems += _name_problems("tenants", self.tenants)
        problems += _name_problems("principals", self.principals)
        known = set(self.regions)
        for name, tenant in self.tenants.items():
            problems += [f"tenants.{name}: region {r!r} is not in regions"
                         for r in sorted(tenant.regions) if r not in known]
        for i, rule in enumerate(self.residency):
            where = f"residency.{i} ({rule.name})"
            for r in ([rule.region] if rule.region else []) + rule.forbid:
                if r not in known:
                    problems.append(f"{where}: region {r!r} is not in regions")
            problems += [f"{where}: tenant {t!r} is not in tenants" for t in rule.match.tenants if t not in self.tenants]
        problems += self._principal_problems()
        if self.pollers_tenant is not None and self.pollers_tenant not in self.tenants:
            problems.append(f"pollers_tenant: {self.pollers_tenant!r} is not in tenants")
        return problems

    def _principal_problems(self) -> list[str]:
        problems, tokens, subjects = [], {}, {}
        for name, principal in self.principals.items():
            problems += [f"principals.{name}: tenant {t!r} is not in tenants"
                         for t in principal.tenants if t != ANY_TENANT and t not in self.tenants]
            if ANY_TENANT in principal.tenants and "admin" not in principal.roles:
                problems.append(f"principals.{name}: only admins may act for every tenant ('*')")
            for token in principal.tokens:
                if token.sha256 in tokens:
                    problems.append(f"principals.{name}: a token is also held by {tokens[token.sha256]}")
                tokens[token.sha256] = name
            for subject in principal.certificates:
                if subject in subjects:
                    problems.append(f"principals.{name}: certificate {subject!r} is also bound to {subjects[subject]}")
                subjects[subject] = name
        return problems


def _name_problems(section: str, names: dict) -> list[str]:
    return [f"{section}.{n}: names are lowercase letters, digits, '-' and '_'" for n in names if not re.match(_NAME, n)]
