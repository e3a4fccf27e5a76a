"""The distribution installs under one namespace of ours, and every package of the tree is in it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_installed_under_telemetry_gateway():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = {"telemetry_gateway." + ".".join(p.parent.relative_to(ROOT).parts)
            for top in ("gateway", "adapters", "schema", "policies") for p in (ROOT / top).rglob("__init__.py")}
    assert set(config["packages"]) == tree
    assert config["package-dir"] == {f"telemetry_gateway.{top}": top for top in ("gateway", "adapters", "schema", "policies")}


def test_no_module_imports_the_bare_top_level_names():
    offenders = []
    for top in ("gateway", "adapters", "schema", "policies", "tests", "loadtest"):
        for path in (ROOT / top).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("from gateway", "from adapters", "from schema", "from policies",
                                        "import gateway", "import adapters", "import schema", "import policies")):
                    offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert offenders == []
