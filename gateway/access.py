"""Who is calling, what they may do, and where their rows may go: the access policy applied.

Without a policy (`policy.file` unset) the gateway is open, as before: every
request belongs to tenant `default` and lands in the default region. With
one, every write and read is decided here:

    authenticate   bearer token (SHA-256 looked up among the policy's hashes,
                   expiry checked) or TLS client certificate subject
                   -> the principal, or Unauthenticated (401 / UNAUTHENTICATED)
    authorize      the principal's roles and tenants: the tenant comes from the
                   principal; `X-Scope-OrgID` only picks among the principal's
                   own tenants -> the tenant, or PermissionDenied (403)
    place          residency rules, per row: the region each row must go to,
                   or the reason it may go nowhere (refused, never defaulted)

Why hashed opaque tokens rather than signed ones (JWT): a token is revoked by
removing its hash and reloading, at once, with no key to manage and no claims
parser on the request path; expiry and rotation are per token entry
(`not_before`, `expires`, several valid at once). Tokens are 256 random bits,
so a fast hash is as safe as a slow one and costs about a microsecond.

A request is decided by one policy version from start to end: `admit`
returns the compiled policy it used, and routing uses that same object, so a
reload in between cannot split a request across two versions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_gateway.gateway.batch import Caller
from telemetry_gateway.gateway.errors import PermissionDenied, Unauthenticated
from telemetry_gateway.policies.load import LoadedPolicy
from telemetry_gateway.policies.model import ANY_TENANT, Principal, ResidencyRule, TenantLimits, TenantPolicy

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
TOKEN_PREFIX = "tgw_"
INTERNAL_TRANSPORTS = frozenset({"poller"})


@dataclass(frozen=True)
class Credentials:
    """What a request presented. Lives only while the request is admitted; never logged or stored."""

    token: str = ""
    tenant: str = ""  # X-Scope-OrgID: which of the principal's tenants, when it has several

    def __repr__(self) -> str:
        return f"Credentials(token={'<set>' if self.token else '<none>'}, tenant={self.tenant!r})"


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; empty when absent or of another scheme."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def new_token() -> tuple[str, str]:
    """A new bearer token and the SHA-256 hex digest the policy keeps."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Placement:
    """Where the rows of one batch go: one region for all, or a region per row (None: refused)."""

    region: str | None = None
    regions: np.ndarray | None = None  # object array of region names or None, per row
    refusals: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> row mask


class CompiledPolicy:
    """A loaded policy, indexed for the request path. Immutable once built."""

    def __init__(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        self.policy = loaded.policy
        self.version = loaded.version
        self._tokens = {t.sha256: (name, t) for name, p in self.policy.principals.items() for t in p.tokens}
        self._subjects = {s: name for name, p in self.policy.principals.items() for s in p.certificates}

    # -- authentication --

    def authenticate(self, token: str, certificate_subject: str, now: datetime | None = None) -> tuple[str, Principal]:
        """The principal of a bearer token, else of a client certificate; a token wins when both came."""
        now = now or datetime.now(timezone.utc)
        if token:
            found = self._tokens.get(token_hash(token))
            if found is None:
                raise Unauthenticated("the bearer token is not valid")
            name, entry = found
            if not entry.valid_at(now):
                raise Unauthenticated("the bearer token has expired or is not valid yet")
            return name, self.policy.principals[name]
        if certificate_subject:
            name = self._subjects.get(certificate_subject)
            if name is None:
                raise Unauthenticated("the client certificate is not bound to any principal")
            return name, self.policy.principals[name]
        raise Unauthenticated("credentials are required: a bearer token (Authorization: Bearer ...) "
                              "or a TLS client certificate")

    # -- authorization --

    def tenant_for_write(self, principal: Principal, asked: str) -> str:
        if "ingest" not in principal.roles and "admin" not in principal.roles:
            raise PermissionDenied("this principal may not write (it has no ingest role)")
        return self._pick_tenant(principal, asked, "write to")

    def tenants_for_read(self, principal: Principal, asked: str) -> tuple[str, ...]:
        if asked:
            return (self._pick_tenant(principal, asked, "read"),)
        if ANY_TENANT in principal.tenants:
            return tuple(self.policy.tenants)
        return tuple(principal.tenants)

    def _pick_tenant(self, principal: Principal, asked: str, action: str) -> str:
        # The same words whether the tenant exists or not: an answer must not reveal other tenants.
        refused = PermissionDenied(f"this principal may not {action} the tenant named in X-Scope-OrgID")
        if asked:
            if asked in principal.tenants or (ANY_TENANT in principal.tenants and asked in self.policy.tenants):
                return asked
            raise refused
        own = [t for t in principal.tenants if t != ANY_TENANT]
        if len(own) == 1 and ANY_TENANT not in principal.tenants:
            return own[0]
        raise PermissionDenied(f"this principal acts for several tenants: name one in X-Scope-OrgID")

    def pollers_tenant(self) -> str:
        if self.policy.pollers_tenant is None:
            raise PermissionDenied("the policy names no pollers_tenant, so polled data has no owner")
        return self.policy.pollers_tenant

    def tenant(self, name: str) -> TenantPolicy:
        return self.policy.tenants[name]

    # -- residency --

    def home_region(self, tenant: str) -> str:
        return self.policy.tenants[tenant].home_region

    def place(self, tenant: str, rows: pa.Table) -> Placement:
        """The region of every row, by the first rule with a region that matches it (else the
        tenant's home), refused where a matching rule forbids it or the tenant may not use it."""
        rules = [r for r in self.policy.residency if not r.match.tenants or tenant in r.match.tenants]
        resource = rows.column("resource_attributes") if "resource_attributes" in rows.column_names else None
        if resource is None or not any(r.match.resource for r in rules):
            return self._place_uniform(tenant, [r for r in rules if not r.match.resource])
        return self._place_rows(tenant, rules, resource, rows.num_rows)

    def _place_uniform(self, tenant: str, rules: list[ResidencyRule]) -> Placement:
        region = next((r.region for r in rules if r.region), self.home_region(tenant))
        reason = self._refusal(tenant, region, rules)
        return Placement(region=region) if reason is None else Placement(refusals={reason: None})

    def _refusal(self, tenant: str, region: str, rules: list[ResidencyRule]) -> str | None:
        for rule in rules:
            if region in rule.forbid:
                return f"residency rule {rule.name} forbids region {region}"
        if region not in self.policy.tenants[tenant].regions:
            return f"region {region} is not allowed for the tenant"
        return None

    def _place_rows(self, tenant: str, rules: list[ResidencyRule], resource: pa.ChunkedArray, n: int) -> Placement:
        if n == 0:
            return Placement(region=self.home_region(tenant))
        names = [self.home_region(tenant)] + sorted({r.region for r in rules if r.region} - {self.home_region(tenant)})
        matches = _matches_all(rules, resource, n)
        codes = np.zeros(n, dtype=np.int8)  # index into names: cheaper than strings per row
        placed = np.zeros(n, dtype=bool)
        for rule, mask in zip(rules, matches):
            if rule.region:
                take = mask & ~placed
                codes[take] = names.index(rule.region)
                placed |= take
        refusals: dict[str, np.ndarray] = {}
        refused = np.zeros(n, dtype=bool)
        for code in np.unique(codes).tolist():
            region = names[code]
            in_region = codes == code
            for rule, mask in zip(rules, matches):
                if region in rule.forbid:
                    _add_refusal(refusals, f"residency rule {rule.name} forbids region {region}", in_region & mask & ~refused)
                    refused |= in_region & mask
            if region not in self.policy.tenants[tenant].regions:
                _add_refusal(refusals, f"region {region} is not allowed for the tenant", in_region & ~refused)
                refused |= in_region
        if not refusals and (codes == codes[0]).all():
            return Placement(region=names[codes[0]])  # the common case: no split, no filter
        regions = np.array(names, dtype=object)[codes]
        regions[refused] = None
        return Placement(regions=regions, refusals=refusals)


def _add_refusal(refusals: dict[str, np.ndarray], reason: str, mask: np.ndarray) -> None:
    if mask.any():
        refusals[reason] = mask if reason not in refusals else refusals[reason] | mask


def _matches_all(rules: list[ResidencyRule], resource: pa.ChunkedArray, n: int) -> list[np.ndarray]:
    """Per rule, the rows whose resource attributes satisfy every condition of its match.

    By hand rather than `pc.map_lookup` (measured: 600 us for 2000 rows, against about 50): the
    maps' entries are read flat once, each entry knowing its row."""
    maps = resource.combine_chunks() if isinstance(resource, pa.ChunkedArray) else resource
    offsets = maps.offsets.to_numpy()  # of this (maybe sliced) array; `values` is the whole child
    keys, values = maps.values.slice(offsets[0], offsets[-1] - offsets[0]).flatten()
    rows = None  # each entry's row, worked out only when some entry matches
    out = []
    for rule in rules:
        mask = np.ones(n, dtype=bool)
        for key, wanted in rule.match.resource.items():
            hit = pc.and_(pc.equal(keys, key), pc.is_in(values, value_set=pa.array(wanted, pa.string())))
            if not pc.any(hit).as_py():  # the usual case: no row of the batch has the attribute value
                mask[:] = False
                break
            if rows is None:
                rows = np.repeat(np.arange(n), np.diff(offsets))
            found = np.zeros(n, dtype=bool)
            found[rows[pc.fill_null(hit, False).to_numpy(zero_copy_only=False)]] = True
            mask &= found
        out.append(mask)
    return out


@dataclass(frozen=True)
class Admission:
    """A request let in: the caller with its principal named, its tenant, and the policy that decided."""

    caller: Caller
    tenant: str
    policy: CompiledPolicy | None

    @property
    def limits(self) -> TenantLimits | None:
        """The tenant's limits under the deciding policy; None without a policy."""
        return self.policy.tenant(self.tenant).limits if self.policy is not None else None


class Access:
    """The policy in force, swapped whole on reload; None means open (no policy configured)."""

    def __init__(self, loaded: LoadedPolicy | None) -> None:
        self.current: CompiledPolicy | None = CompiledPolicy(loaded) if loaded is not None else None

    def swap(self, loaded: LoadedPolicy) -> None:
        self.current = CompiledPolicy(loaded)

    def admit_write(self, caller: Caller, credentials: Credentials | None) -> Admission:
        policy = self.current  # read once: the whole request is decided by this version
        if policy is None:
            return Admission(caller, DEFAULT_TENANT, None)
        if caller.transport in INTERNAL_TRANSPORTS:
            return Admission(caller, policy.pollers_tenant(), policy)
        credentials = credentials or Credentials()
        name, principal = policy.authenticate(credentials.token, caller.certificate_subject)
        tenant = policy.tenant_for_write(principal, credentials.tenant)
        return Admission(_named(caller, name), tenant, policy)


def _named(caller: Caller, principal: str) -> Caller:
    return Caller(caller.transport, caller.peer, caller.certificate_subject, principal)
