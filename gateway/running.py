"""What the CLI needs to find and talk to a running gateway, and nothing heavier.

A gateway holding an embedded store locks `<store.path>/.gateway.lock` and
leaves beside it its admin address (`gateway.json`) and admin token
(`admin.token`, 0600). A command that only forwards a query reads these and
makes one HTTP call, so it imports the standard library, click and (with
`--config`) PyYAML, not the pipeline, pyarrow or chDB: it answers in a small
fraction of the time of a full start.
"""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
from pathlib import Path

LOCK_NAME = ".gateway.lock"
TOKEN_FILE = "admin.token"
RUNTIME_FILE = "gateway.json"
DEFAULT_STORE_PATH = Path("./data")


class AdminCallFailed(Exception):
    pass


def holder_alive(path: Path) -> bool:
    """True when another process holds the data directory."""
    lock = path / LOCK_NAME
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def store_path(config_path: Path | None) -> Path | None:
    """`store.path` of a config file read as plain YAML, or None when only a full load can tell
    (the file is unreadable or invalid, or the path names an environment variable)."""
    if config_path is None:
        return DEFAULT_STORE_PATH
    import yaml

    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    store = data.get("store") if isinstance(data, dict) else None
    value = store.get("path", str(DEFAULT_STORE_PATH)) if isinstance(store, dict) else str(DEFAULT_STORE_PATH)
    if not isinstance(value, str) or "${" in value:
        return None
    return Path(value)


def admin_call(path: Path, route: str, body: dict, token: str | None = None, tenant: str | None = None) -> bytes:
    """POST to the admin API of the gateway holding `path`, with the token it left there (or a
    principal's `token`, and `tenant` for X-Scope-OrgID)."""
    try:
        info = json.loads((path / RUNTIME_FILE).read_text())
        token = token or (path / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        raise AdminCallFailed(f"the store at {path} is held by a process that left no admin details: {exc}") from None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    cert = info.get("admin_cert")
    request = urllib.request.Request(f"{'https' if cert else 'http'}://{info['admin']}{route}",
                                     data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300, context=_pinned(cert) if cert else None) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise AdminCallFailed(exc.read().decode(errors="replace").strip()) from None
    except urllib.error.URLError as exc:
        raise AdminCallFailed(f"cannot reach the gateway at {info['admin']}: {exc.reason}") from None


def _pinned(cert_file: str):
    """Trust exactly the certificate the gateway serves on its admin listener (it named it in
    gateway.json): the address may be an IP its certificate does not list."""
    import ssl

    context = ssl.create_default_context(cafile=cert_file)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context
