"""The typed manifest that the planner and the engine work from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner404.diagnostics import Diagnostic, Mark
from runner404.prompts import PromptSet
from runner404.secret import Secret

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from `90`, `90s`, `500ms`, `15m` or `4h`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


@dataclass(frozen=True)
class Provider:
    type: str  # targon | local | endpoint
    api_key: Secret | str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Health:
    path: str
    timeout: float  # seconds
    interval: float


@dataclass(frozen=True)
class Pod:
    id: str
    provider: Provider
    name: str  # workload name
    image: str | None
    resource: str | None
    port: int
    args: tuple[str, ...]
    env: dict[str, str | Secret]  # secrets revealed only when the pod starts
    command: tuple[str, ...] | None
    url: str | None
    health: Health
    replicas: int
    keep: bool
    preset: str | None
    description: str | None = None

    def spec(self) -> dict[str, Any]:
        """What defines the workload (secrets by name): part of fingerprints and reuse checks."""
        return {
            "provider": self.provider.type, "name": self.name, "image": self.image,
            "resource": self.resource, "port": self.port, "args": list(self.args),
            "env": self.env, "command": list(self.command) if self.command else None,
            "url": self.url, "health": self.health.path, "replicas": self.replicas,
        }

    def revealed_env(self) -> dict[str, str]:
        return {k: v.reveal() if isinstance(v, Secret) else v for k, v in self.env.items()}

    def summary(self) -> str:
        if self.provider.type == "local":
            return " ".join(self.command or ())
        if self.provider.type == "endpoint":
            return self.url or ""
        return f"{self.image} on {self.resource}"


# The fields above that take a Secret (typed `Secret | str`), as paths in the manifest: a
# provider's api_key, at the top or on a pod, and a pod's env values (`*`: any pod id or name).
# Whatever is given for one on the command line (`--set provider.api_key=...`) is shown and stored
# as ***, and schema errors about one do not quote its value.
SECRET_FIELDS: tuple[tuple[str, ...], ...] = (
    ("provider", "api_key"),
    ("pods", "*", "provider", "api_key"),
    ("pods", "*", "env", "*"),
)


def _agree(path: Sequence[str | int], pattern: tuple[str, ...]) -> bool:
    return all(f == "*" or f == p for p, f in zip(path, pattern))


def is_secret_field(path: Sequence[str | int]) -> bool:
    """Whether the value at `path` is one of SECRET_FIELDS, or inside one."""
    return any(len(path) >= len(f) and _agree(path, f) for f in SECRET_FIELDS)


def encloses_secret_field(path: Sequence[str | int]) -> bool:
    """Whether a mapping set at `path` can hold one of SECRET_FIELDS (`provider`, `pods.<id>`, ...)."""
    return any(len(path) < len(f) and _agree(path, f) for f in SECRET_FIELDS)


@dataclass(frozen=True)
class Stage:
    id: str
    kind: str
    params: dict[str, Any]  # resolved parameters except uses/needs/description/output
    needs: tuple[str, ...]
    output: str | None  # folder relative to the manifest, None for kinds without outputs
    description: str | None
    mark: Mark  # where the stage is defined

    @property
    def pod(self) -> str | None:
        value = self.params.get("pod")
        return value if isinstance(value, str) else None  # anything else was reported by the schema

    @property
    def prompts(self) -> str | None:
        value = self.params.get("prompts")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Edge:
    """`stage` depends on `on`, because of `why`: needs | expression | path."""

    stage: str
    on: str
    why: str
    mark: Mark


@dataclass
class Manifest:
    file: str  # as given on the command line
    path: Path
    name: str
    description: str | None
    vars: dict[str, Any]
    secrets: dict[str, Secret]
    pods: dict[str, Pod]
    prompt_sets: dict[str, PromptSet]
    stages: dict[str, Stage]
    edges: list[Edge]
    data: dict[str, Any]  # the resolved tree (may hold Secret objects)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        return (self.base_dir / Path(value).expanduser()).resolve()

    def dependencies(self, stage_id: str) -> list[str]:
        seen: dict[str, None] = {}
        for edge in self.edges:
            if edge.stage == stage_id:
                seen.setdefault(edge.on)
        return list(seen)
