"""Stage fingerprints: sha256 over canonical JSON of everything that determines a stage's outputs.

Secrets enter by name only (runner404.secret.by_name), so a fingerprint never depends on, or
reveals, a secret's value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner404 import __version__
from runner404.manifest.model import Manifest, Stage
from runner404.secret import by_name


def canonical(value: Any) -> str:
    return json.dumps(by_name(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def stage_inputs(stage: Stage, manifest: Manifest, upstream: Mapping[str, str]) -> dict[str, Any]:
    """The fingerprinted description of a stage (also kept in the ledger to explain changes)."""
    pod = manifest.pods.get(stage.pod) if stage.pod else None
    return {
        "kind": stage.kind,
        "params": by_name(stage.params),
        "output": stage.output,
        "inputs": {dep: upstream[dep] for dep in sorted(upstream)},
        # what the service is, not where it runs: moving a renderer from Targon to a local
        # process with the same image does not invalidate its renders
        "service": None if pod is None else {
            "image": pod.image or (" ".join(pod.command) if pod.command else pod.url),
            "args": list(pod.args),
        },
        "runner": __version__,
        **({"templates": _templates_digest(stage, manifest)} if stage.kind == "judge" else {}),
    }


def _templates_digest(stage: Stage, manifest: Manifest) -> str:
    """The judge's prompt wording is part of what decides a duel: the sha256 of
    runner404.judge.messages.Templates.digest, read the way its Jinja2 loaders read (a same-named
    file in `templates:` first, text mode, UTF-8) without importing Jinja2 to plan."""
    import runner404.judge

    builtin = Path(runner404.judge.__file__).parent / "templates"
    folder = stage.params.get("templates")
    try:
        own = manifest.resolve_path(folder) if folder else None
        sha = hashlib.sha256()
        for name in sorted(p.name for p in builtin.glob("*.j2")):
            path = own / name if own is not None and (own / name).is_file() else builtin / name
            with open(path, encoding="utf-8") as handle:
                sha.update(name.encode() + b"\0" + handle.read().encode() + b"\0")
        return sha.hexdigest()
    except Exception as exc:  # a broken replacement folder: the stage reports it when it runs
        return f"unreadable: {type(exc).__name__}"


def stage_fingerprint(stage: Stage, manifest: Manifest, upstream: Mapping[str, str]) -> str:
    return digest(stage_inputs(stage, manifest, upstream))
