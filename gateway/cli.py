"""`telemetry-gateway`: serve, check-config, sql, deadletter.

Heavy modules (the pipeline, pydantic, pyarrow, chDB) are imported inside the
commands that need them: `--help`, and `sql` through a running gateway, load
only the standard library, click and PyYAML (`gateway.running`).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import click

from telemetry_gateway.gateway.running import AdminCallFailed, admin_call, holder_alive, store_path

if TYPE_CHECKING:
    from telemetry_gateway.gateway.config import GatewayConfig
    from telemetry_gateway.gateway.deadletter import DeadLetters

CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="YAML config file.")


def _load(path: Path | None) -> GatewayConfig:
    from telemetry_gateway.gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """SelfMetrics ingestion and normalization gateway."""
    # SelfMetrics and the admin token are private: every file the gateway or the
    # engine inside it creates is 0600, every directory 0700.
    os.umask(0o077)


@main.command("serve")
@CONFIG
def serve_command(config_path: Path | None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    import asyncio
    import logging

    from telemetry_gateway.gateway.errors import StoreUnavailable
    from telemetry_gateway.gateway.service import serve
    from telemetry_gateway.gateway.store.embedded import DataDirInUse
    from telemetry_gateway.policies.load import PolicyError
    from telemetry_gateway.schema.migrations import SchemaTooNew

    config = _load(config_path)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    private_dir(config.store.path)
    tune_process()
    try:
        asyncio.run(serve(config))
    except DataDirInUse as exc:
        raise click.ClickException(f"{exc}; is another gateway running? (`telemetry-gateway sql` works alongside it)") from None
    except (SchemaTooNew, StoreUnavailable, PolicyError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def tune_process() -> None:
    """What `serve` and its listener workers set before they start: descriptors, GC, allocators."""
    raise_file_limit()
    _tune_gc()
    _arrow_pool()
    _keep_freed_memory()


def _tune_gc() -> None:
    """Collect the young generation every 50k allocations, not 700. Text sources make many small
    objects per sample (labels, tuples) while the registries hold millions of long-lived ones, and
    each collection walked them: measured on the scrape benchmark (50 targets x 1000 series every
    second), 25k samples/s stored at 47 CPU-s per million before, 44k at 28 after; remote write
    34k at 34 before, 45k at 27 after; OTLP unchanged. Cycles are still collected, less often."""
    import gc

    gc.set_threshold(50_000, 20, 100)


def _arrow_pool() -> None:
    """Arrow's allocations from jemalloc rather than its default, mimalloc, which gave freed
    memory back to the OS and faulted it in again on the next batch: with transparent huge pages
    each fault zeroed 2 MiB, 17 % of the gateway's CPU (perf, OTLP/HTTP load). Measured with
    `loadtest.run`'s payloads: 5.7-5.8 -> 5.4 CPU-s per million points, 300k -> 325k points/s.
    ARROW_DEFAULT_MEMORY_POOL, when set, still decides."""
    import os

    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc keeps its default
        pass


def _keep_freed_memory() -> bool:
    """glibc's malloc hands blocks from 128 KiB up (a batch's numpy arrays and Python buffers)
    straight to mmap and unmaps them when freed, so each request faulted its pages in again: 6 % of
    the gateway's CPU in page faults under load after `_arrow_pool`. Keeping blocks up to 32 MiB in
    the heap, and up to 256 MiB free at its top, measured 5.5 -> 5.15-5.4 CPU-s per million points
    on OTLP/HTTP, 5.6 -> 5.5 on remote write. True when the C library took both settings."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's C library; not every one has it
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))


def raise_file_limit() -> None:
    """Every connection is a descriptor: take the hard limit, as Go servers do, so the
    listeners' max_connections (not a low soft limit) is what bounds them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def private_dir(path: Path) -> None:
    """The data directory, 0700 even if it was made earlier with wider rights."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path: Path) -> None:
    """Validate a config file, and the policy file it names, and list every problem."""
    config = _load(path)
    if config.policy.file is not None:
        _check_policy(config.policy.file, list(config.store.regions))
    click.echo(f"{path}: ok")


def _check_policy(path: Path, regions: list[str]):
    from telemetry_gateway.policies.load import PolicyError, load_policy

    try:
        return load_policy(path, regions)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


@main.group("policy")
def policy() -> None:
    """The access policy: tenants, roles, principals and residency rules."""


@policy.command("check")
@CONFIG
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def policy_check(config_path: Path | None, path: Path) -> None:
    """Validate a policy file against the regions of the config's store, and list every problem."""
    loaded = _check_policy(path, list(_load(config_path).store.regions))
    click.echo(f"{path}: ok, version {loaded.version}")


@policy.command("render-sql")
@CONFIG
@click.option("--region", help="Only this region's statements.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def policy_render_sql(config_path: Path | None, region: str | None, path: Path) -> None:
    """Print ClickHouse roles, row policies, users and grants equivalent to the policy, per region."""
    from telemetry_gateway.policies.render_sql import render

    config = _load(config_path)
    loaded = _check_policy(path, list(config.store.regions))
    databases = {name: r.database for name, r in config.store.regions.items()}
    blocks = render(loaded.policy, databases)
    if region is not None and region not in blocks:
        raise click.ClickException(f"no region named {region!r} in the policy")
    for name, statements in blocks.items():
        if region is None or name == region:
            click.echo(f"-- region {name} (database {databases[name]}), policy version {loaded.version}")
            click.echo("".join(f"{statement};\n" for statement in statements))


@policy.command("token")
@click.option("--id", "token_id", default="", help="A name for the token, shown in logs and audit rows.")
def policy_token(token_id: str) -> None:
    """Make a bearer token: the token once on stdout, and the entry for a principal's `tokens` list on stderr."""
    from telemetry_gateway.gateway.access import new_token

    token, digest = new_token()
    click.echo(token)
    entry = f"- sha256: {digest}" + (f"\n  id: {token_id}" if token_id else "")
    click.echo(f"# add to the principal's tokens in the policy file:\n{entry}", err=True)


@main.command("sql")
@CONFIG
@click.option("--region", help="Regional store to query: `default`, or the only one configured.")
@click.option("--format", "fmt", default="PrettyCompact", show_default=True, help="ClickHouse output format.")
@click.option("--tenant", help="With a principal's token: which of its tenants (X-Scope-OrgID).")
@click.argument("statement")
def sql(config_path: Path | None, region: str | None, fmt: str, tenant: str | None, statement: str) -> None:
    """Run one read-only SQL statement on a regional store, in its database.

    While a gateway holds the store (at ./data, or the --config file's
    store.path) the query goes through it, and it knows the regions;
    otherwise the store is opened directly.
    """
    path = store_path(config_path)
    token = os.environ.get("TELEMETRY_GATEWAY_TOKEN") or None
    if path is not None and holder_alive(path):
        out = _admin_call(path, "/api/v1/sql", {"sql": statement, "region": region, "format": fmt}, token, tenant)
    elif token:
        raise click.ClickException("reading as a principal (TELEMETRY_GATEWAY_TOKEN) needs a running gateway")
    else:
        out = _direct(_load(config_path), region, fmt, statement)
    sys.stdout.buffer.write(out)


def _admin_call(path: Path, route: str, body: dict, token: str | None = None, tenant: str | None = None) -> bytes:
    try:
        return admin_call(path, route, body, token, tenant)
    except AdminCallFailed as exc:
        raise click.ClickException(str(exc)) from None


def _direct(config: GatewayConfig, region: str | None, fmt: str, statement: str) -> bytes:
    from telemetry_gateway.gateway.admin import pick_store, read_limits, region_or_default, run_read
    from telemetry_gateway.gateway.errors import GatewayError
    from telemetry_gateway.gateway.store.embedded import DataDirInUse
    from telemetry_gateway.gateway.store.regions import RegionStores

    try:
        region = region_or_default(list(config.store.regions), region)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    only = config.store.model_copy(update={"regions": {region: config.store.regions[region]}})
    stores = RegionStores(only)
    try:
        stores.open()
        store = pick_store(stores, region, fmt)
        return run_read(store, statement, fmt, read_limits(config.admin.query), f"read-{uuid.uuid4().hex}")
    except (GatewayError, DataDirInUse) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stores.close()


@main.group("deadletter")
def deadletter() -> None:
    """Batches the store refused permanently."""


@deadletter.command("list")
@CONFIG
def deadletter_list(config_path: Path | None) -> None:
    """List dead-lettered batches with their reasons."""
    from telemetry_gateway.gateway.deadletter import DeadLetters

    config = _load(config_path)
    entries = DeadLetters(config.store.path / "deadletter").list()
    for e in entries:
        click.echo(f"{e.batch_id}  {e.region}/{e.table}  {e.rows} rows  {e.reason.splitlines()[0]}")
    click.echo(f"{len(entries)} dead-lettered batch(es)")


@deadletter.command("redrive")
@CONFIG
@click.option("--all", "everything", is_flag=True, help="Redrive every dead-lettered batch.")
@click.argument("ids", nargs=-1)
def deadletter_redrive(config_path: Path | None, everything: bool, ids: tuple[str, ...]) -> None:
    """Send dead-lettered batches to the store again (those still refused come back, under the same id)."""
    from telemetry_gateway.gateway.deadletter import DeadLetters

    config = _load(config_path)
    letters = DeadLetters(config.store.path / "deadletter")
    chosen = [e.batch_id for e in letters.list()] if everything else list(ids)
    if not chosen:
        raise click.ClickException("name batch ids or pass --all")
    if holder_alive(config.store.path):
        results = json.loads(_admin_call(config.store.path, "/api/v1/deadletter/redrive", {"ids": chosen}))
    else:
        results = {batch_id: _redrive_direct(config, letters, batch_id) for batch_id in chosen}
    failed = 0
    for old, outcome in results.items():
        click.echo(f"{old}: {outcome if outcome.startswith('error') else 'redriven as ' + outcome}")
        failed += outcome.startswith("error")
    if failed:
        raise click.ClickException(f"{failed} batch(es) not redriven")


def _redrive_direct(config: GatewayConfig, letters: DeadLetters, batch_id: str) -> str:
    from telemetry_gateway.gateway.errors import GatewayError
    from telemetry_gateway.gateway.store.regions import RegionStores
    from telemetry_gateway.gateway.store.writer import batch_token
    from telemetry_gateway.schema import conform

    try:
        batch = letters.load(batch_id)
    except KeyError as exc:
        return f"error: {exc.args[0]}"
    if batch.region not in config.store.regions:
        return f"error: region {batch.region!r} is not configured"
    only = config.store.model_copy(update={"regions": {batch.region: config.store.regions[batch.region]}})
    stores = RegionStores(only)
    new_id = uuid.uuid4().hex
    try:
        stores.open()
        stores[batch.region].insert_group(batch.table, conform(batch.table, batch.rows), batch_token([new_id]))
    except GatewayError as exc:
        return f"error: {str(exc).splitlines()[0]}"
    finally:
        stores.close()
    letters.remove(batch_id)
    return new_id


if __name__ == "__main__":
    main()
