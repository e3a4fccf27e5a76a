"""`telemetry-gateway`: serve, check-config, sql."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from gateway.admin import run_read
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.errors import GatewayError, StoreUnavailable
from gateway.service import RUNTIME_FILE, TOKEN_FILE, serve
from gateway.store.embedded import DataDirInUse, holder_alive
from gateway.store.regions import RegionStores
from schema.migrations import SchemaTooNew

CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="YAML config file.")


def _load(path: Path | None) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Telemetry ingestion and normalization gateway."""


@main.command("serve")
@CONFIG
def serve_command(config_path: Path | None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    config = _load(config_path)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(config))
    except DataDirInUse as exc:
        raise click.ClickException(f"{exc}; is another gateway running? (`telemetry-gateway sql` works alongside it)") from None
    except (SchemaTooNew, StoreUnavailable, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path: Path) -> None:
    """Validate a config file and list every problem."""
    _load(path)
    click.echo(f"{path}: ok")


@main.command("sql")
@CONFIG
@click.option("--region", default="default", show_default=True, help="Regional store to query.")
@click.option("--format", "fmt", default="PrettyCompact", show_default=True, help="ClickHouse output format.")
@click.argument("statement")
def sql(config_path: Path | None, region: str, fmt: str, statement: str) -> None:
    """Run one read-only SQL statement on a regional store.

    On the embedded store held by a running gateway the query goes through
    that gateway; otherwise the store is opened directly.
    """
    config = _load(config_path)
    if region not in config.store.regions:
        raise click.ClickException(f"no region named {region!r} (configured: {', '.join(config.store.regions)})")
    embedded = config.store.regions[region].backend == "embedded"
    if embedded and holder_alive(config.store.path):
        out = _via_gateway(config.store.path, region, fmt, statement)
    else:
        out = _direct(config, region, fmt, statement)
    sys.stdout.buffer.write(out)


def _via_gateway(path: Path, region: str, fmt: str, statement: str) -> bytes:
    try:
        info = json.loads((path / RUNTIME_FILE).read_text())
        token = (path / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        raise click.ClickException(f"the store at {path} is held by a process that left no admin details: {exc}") from None
    request = urllib.request.Request(
        f"http://{info['admin']}/api/v1/sql",
        data=json.dumps({"sql": statement, "region": region, "format": fmt}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise click.ClickException(exc.read().decode(errors="replace").strip()) from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach the gateway at {info['admin']}: {exc.reason}") from None


def _direct(config: GatewayConfig, region: str, fmt: str, statement: str) -> bytes:
    only = config.store.model_copy(update={"regions": {region: config.store.regions[region]}})
    stores = RegionStores(only)
    try:
        stores.open()
        return run_read(stores, region, statement, fmt)
    except (GatewayError, DataDirInUse) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stores.close()


if __name__ == "__main__":
    main()
