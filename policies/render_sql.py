"""The policy as ClickHouse access control, for people who query a ClickHouse server directly.

`telemetry-gateway policy render-sql` prints, per region (run each block on
that region's server), the same scope the gateway's SQL API enforces:

* a role per tenant and read role (`tgw.<tenant>.read_raw`,
  `tgw.<tenant>.read_validated`) with SELECT on that role's tables and on
  what reading `metric_points` reads through (`READ_THROUGH`), and
  `tgw.*.admin` with SELECT on the whole database;
* row policies on every table a role reads: `tenant = '<tenant>'` (and no
  quality flag for read_validated on `metric_points` and the kind tables),
  `1` for the admin, so a user with none of these roles reads no rows of a
  table that has them;
* a user per principal with a read or admin role, identified by its token's
  SHA-256 (ClickHouse's `sha256_hash`: the token is the password) or its
  certificate's CN (`tgw.<principal>`), granted its roles in the regions its
  tenants may use.

Principals that only ingest get no ClickHouse user: the gateway writes for them.
"""

from __future__ import annotations

from telemetry_gateway.gateway.store.reads import RAW_TABLES, VALIDATED_TABLES
from telemetry_gateway.policies.model import ANY_TENANT, Policy, Principal
from telemetry_gateway.schema.ddl import ident, quote
from telemetry_gateway.schema.layout import KIND_TABLES, SERIES_LABELS

_KIND_TABLES = tuple(k.table.name for k in KIND_TABLES)
# Reading metric_points (a Merge table) reads the kind tables under their own grants and row policies, and
# its label columns call joinGet on series_labels, which needs SELECT on it (ClickHouse 26.1 and later).
# series_labels gets no row policy: a Join table keyed by several columns cannot be read but by joinGet,
# and joinGet applies none.
READ_THROUGH = {"metric_points": _KIND_TABLES + (SERIES_LABELS,)}
# Tables whose rows carry quality flags: read_validated reads only the unflagged ones.
_VALIDATED_ROWS = frozenset(("metric_points",) + _KIND_TABLES)



def render(policy: Policy, databases: dict[str, str]) -> dict[str, list[str]]:
    """Statements per region, for the regions of the policy whose database is known."""
    return {region: _region(policy, region, databases[region]) for region in policy.regions if region in databases}


def _region(policy: Policy, region: str, database: str) -> list[str]:
    db = ident(database)
    tenants = [t for t, tenant in policy.tenants.items() if region in tenant.regions]
    out = [f"CREATE ROLE IF NOT EXISTS {_admin_role()}", f"GRANT SELECT ON {db}.* TO {_admin_role()}"]
    for tenant in tenants:
        for role, tables in (("read_raw", RAW_TABLES), ("read_validated", VALIDATED_TABLES)):
            name = _role(tenant, role)
            out.append(f"CREATE ROLE IF NOT EXISTS {name}")
            out += [f"GRANT SELECT ON {db}.{ident(t)} TO {name}" for t in _granted(tables)]
    for table in sorted(RAW_TABLES):
        out += _row_policies(db, table, tenants)
    for name, principal in sorted(policy.principals.items()):
        out += _user(policy, name, principal, region, tenants)
    return out


def _granted(tables: frozenset[str]) -> list[str]:
    return sorted(set(tables).union(*(READ_THROUGH.get(t, ()) for t in tables)))


def _row_policies(db: str, table: str, tenants: list[str]) -> list[str]:
    out = [f"CREATE ROW POLICY IF NOT EXISTS {_name('*', table)} ON {db}.{ident(table)} "
           f"AS permissive FOR SELECT USING 1 TO {_admin_role()}"]
    for tenant in tenants:
        roles = [_role(tenant, "read_raw")]
        if table in _VALIDATED_ROWS:
            out.append(_policy(db, table, (tenant, "validated"), f"tenant = {quote(tenant)} AND empty(quality_flags)",
                               [_role(tenant, "read_validated")]))
        elif table in VALIDATED_TABLES:
            roles.append(_role(tenant, "read_validated"))
        out.append(_policy(db, table, (tenant,), f"tenant = {quote(tenant)}", roles))
    return out


def _policy(db: str, table: str, suffix: tuple[str, ...], condition: str, roles: list[str]) -> str:
    return (f"CREATE ROW POLICY IF NOT EXISTS {_name(*suffix, table)} ON {db}.{ident(table)} "
            f"AS permissive FOR SELECT USING {condition} TO {', '.join(roles)}")


def _user(policy: Policy, name: str, principal: Principal, region: str, tenants_here: list[str]) -> list[str]:
    roles = _roles_of(principal, tenants_here)
    if not roles or not (principal.tokens or principal.certificates):
        return []
    user = _name(name)
    if principal.tokens:
        methods = ", ".join(f"sha256_hash BY {quote(t.sha256)}" for t in principal.tokens)
        expiries = [t.expires for t in principal.tokens]
        until = (f" VALID UNTIL {quote(max(expiries).strftime('%Y-%m-%d %H:%M:%S'))}"
                 if all(e is not None for e in expiries) else "")
        identified = f"IDENTIFIED WITH {methods}{until}"
    else:
        identified = f"IDENTIFIED WITH ssl_certificate CN {', '.join(quote(_cn(s)) for s in principal.certificates)}"
    return [f"CREATE USER IF NOT EXISTS {user} {identified}", f"GRANT {', '.join(roles)} TO {user}",
            f"SET DEFAULT ROLE ALL TO {user}"]


def _roles_of(principal: Principal, tenants_here: list[str]) -> list[str]:
    if "admin" in principal.roles:
        return [_admin_role()]
    tenants = tenants_here if ANY_TENANT in principal.tenants else [t for t in principal.tenants if t in tenants_here]
    roles = []
    for tenant in tenants:
        if "read_raw" in principal.roles:
            roles.append(_role(tenant, "read_raw"))
        elif "read_validated" in principal.roles:
            roles.append(_role(tenant, "read_validated"))
    return roles


def _cn(subject: str) -> str:
    """ClickHouse matches a certificate by its CN: the CN of an RFC 4514 subject."""
    for part in subject.split(","):
        key, _, value = part.partition("=")
        if key.strip().upper() == "CN":
            return value.strip()
    return subject


def _role(tenant: str, role: str) -> str:
    return _name(tenant, role)


def _admin_role() -> str:
    return _name("*", "admin")


def _name(*parts: str) -> str:
    """`tgw.<part>.<part>`: policy names are [a-z0-9_-], so dots keep tenant, role and table apart
    (and '*', which no tenant is called, marks the admin's), and backticks quote them safely."""
    if any("`" in p or "\\" in p for p in parts):
        raise ValueError(f"not a policy name: {parts!r}")
    return "`" + ".".join(("tgw",) + parts) + "`"
