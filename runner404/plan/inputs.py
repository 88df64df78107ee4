"""What each item reads, so an item whose inputs changed on disk is redone.

A stage's fingerprint covers its parameters and its upstream stages' fingerprints, but an
upstream stage can change one item's output without changing its fingerprint (a failed render
retried, a deleted `.js` regenerated). So each done item also records a token of the files it
read (path, size, modification time); the item is done only while that token still matches.
Sizes and times, not hashes: checking 128 duels' 26 images each must stay instant.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runner404.manifest.model import Manifest, Stage


def item_input_files(stage: Stage, manifest: Manifest, item: str) -> list[Path]:
    params = stage.params
    if stage.kind == "render":
        return [manifest.resolve_path(str(params.get("input", ""))) / f"{item}.js"]
    if stage.kind == "judge":
        from runner404.judge.rules import required_files, rules_from

        try:
            files = required_files(rules_from(params.get("rules")))
        except ValueError:
            return []
        sides = [manifest.resolve_path(str(params.get(side, ""))) / item for side in ("left", "right")]
        return [side / name for side in sides for name in files]
    if stage.kind == "generate":
        prompt_set = manifest.prompt_sets.get(stage.prompts or "")
        prompt = next((p for p in prompt_set.prompts if p.stem == item), None) if prompt_set else None
        local = prompt_set.local_image(prompt) if prompt else None
        return [local] if local else []
    if stage.kind == "fetch":  # a folder or file:// source: its file; over http(s) nothing local
        from runner404.collector import is_http, js_url, local_path

        url = str(params.get("url", ""))
        return [] if is_http(url) else [local_path(js_url(url, item), manifest.base_dir)]
    if stage.kind == "report":
        return [manifest.resolve_path(str(params.get("input", ""))) / "duels.json"]
    return []


def token(files: list[Path]) -> str:
    state = []
    for path in files:
        try:
            stat = path.stat()
            state.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            state.append([str(path), None, None])
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:32]


def input_token(stage: Stage, manifest: Manifest, item: str) -> str:
    return token(item_input_files(stage, manifest, item))


# Files a stage writes from all its items at the end (not per item): they must exist and be at
# least as new as every item's output, or the stage runs again to rewrite them (a crash between
# the last item and these files would otherwise leave them missing or stale).
STAGE_FILES = {"judge": ("duels.json", "match.json")}


def stage_files_current(stage: Stage, manifest: Manifest) -> bool:
    names = STAGE_FILES.get(stage.kind)
    if not names or not stage.output:
        return True
    folder = manifest.resolve_path(stage.output)
    try:
        oldest = min((folder / name).stat().st_mtime_ns for name in names)
    except OSError:
        return False
    records = [p for p in folder.glob("*.json") if p.name not in names]
    return all(p.stat().st_mtime_ns <= oldest for p in records)
