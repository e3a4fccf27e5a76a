"""Reading a policy file: every problem listed at once, and a version that names exactly what was loaded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from telemetry_gateway.gateway.config import describe_error
from telemetry_gateway.policies.model import Policy


class PolicyError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    # The first 12 hex digits of the file's SHA-256: what logs, metrics and audit rows name.
    version: str
    source: str


def parse_policy(text: str, store_regions: list[str], source: str = "policy") -> LoadedPolicy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, ["the top level must be a mapping"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [describe_error(e) for e in exc.errors()]) from None
    problems = policy.problems(store_regions)
    if problems:
        raise PolicyError(source, problems)
    return LoadedPolicy(policy, hashlib.sha256(text.encode()).hexdigest()[:12], source)


def load_policy(path: Path, store_regions: list[str]) -> LoadedPolicy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [f"cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_policy(text, store_regions, str(path))

