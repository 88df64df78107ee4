"""What each item reads, so an item whose inputs changed on disk is redone.

A stage's fingerprint covers its parameters and its upstream stages' fingerprints, but an
upstream stage can change one item's output without changing its fingerprint (a failed render
retried, a deleted `.js` regenerated). So each done item also records a token of the files it
read (path, size, modification time); the item is done only while that token still matches.
Sizes and times, not hashes: checking 128 duels' 26 images each must stay instant.

Paths inside the manifest's folder enter the token relative to it, so a project moved or copied
elsewhere with its outputs and state (times kept) is still up to date; paths outside stay
absolute. Earlier ledgers recorded every path absolute (the legacy form): such a token is still
accepted where it was made, and the next run rewrites it (see LedgerState).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import PurePosixPath

from runner404.manifest.model import Manifest, Stage

Stat = Callable[[str], "tuple[int, int] | None"]  # path -> (size, mtime_ns), None when unreadable


def stat(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


class StatCache(dict):
    """os.stat results for one look at the project (one plan): stages share files (a render's
    inputs are the generate stage's outputs, a judge's right side the render's), so each file
    is read once. Never kept across a stage's run: files change then. Pass `cache.__getitem__`
    as a Stat (a hit stays in C)."""

    def __missing__(self, path: str) -> tuple[int, int] | None:
        found = self[path] = stat(path)
        return found


class StageInputs:
    """The files every item of one stage reads, worked out once per stage (folders resolved once,
    per item only string joins): planning a finished N = 512 manifest checks 1536 items."""

    def __init__(self, stage: Stage, manifest: Manifest, stat: Stat = stat):
        self.stage, self.manifest, self._stat = stage, manifest, stat
        base = str(manifest.base_dir)
        self._prefix = base if base.endswith("/") else base + "/"
        self._normalize = stage.kind in ("generate", "fetch")  # paths as written, maybe with '..'
        self._folders: list[str] = []  # absolute, resolved
        self._names: list[str] = []  # per item: <folder>/<item><name> for every folder and name
        self._images: dict[str, str | None] | None = None
        self._fixed: list[str] = []
        params = stage.params
        if stage.kind == "render":
            self._folders = [str(manifest.resolve_path(str(params.get("input", ""))))]
            self._names = [".js"]
        elif stage.kind == "judge":
            from runner404.judge.rules import required_files, rules_from

            try:
                files = required_files(rules_from(params.get("rules")))
            except ValueError:
                files = []
            self._folders = [str(manifest.resolve_path(str(params.get(side, "")))) for side in ("left", "right")]
            # normalized as pathlib would join them, so the absolute form equals earlier versions'
            self._names = ["/" + str(PurePosixPath(name)) for name in files]
        elif stage.kind == "report":
            self._fixed = [str(manifest.resolve_path(str(params.get("input", ""))) / "duels.json")]

    def files(self, item: str) -> list[str]:
        """Absolute paths of the files `item` reads, in a fixed order."""
        kind = self.stage.kind
        if kind in ("render", "judge"):
            return [f"{folder}/{item}{name}" for folder in self._folders for name in self._names]
        if kind == "generate":
            if self._images is None:
                self._images = _local_images(self.stage, self.manifest)
            image = self._images.get(item)
            return [image] if image else []
        if kind == "fetch":  # a folder or file:// source: its file; over http(s) nothing local
            from runner404.collector import is_http, js_url, local_path

            url = str(self.stage.params.get("url", ""))
            return [] if is_http(url) else [str(local_path(js_url(url, item), self.manifest.base_dir))]
        if kind == "report":
            return self._fixed
        return []

    def key(self, path: str) -> str:
        """How a file is named in a token: relative to the manifest's folder when inside it."""
        if self._normalize:
            path = os.path.normpath(path)
        return path[len(self._prefix):] if path.startswith(self._prefix) else path

    def _state(self, item: str) -> list[tuple[str, int | None, int | None]]:
        state = []
        for path in self.files(item):
            found = self._stat(path)
            state.append((path, None, None) if found is None else (path, *found))
        return state

    def token(self, item: str) -> str:
        return _hash([[self.key(path), size, mtime] for path, size, mtime in self._state(item)])

    def matches(self, item: str, recorded: str | None) -> tuple[bool, bool]:
        """(whether `recorded` is the item's current token, whether it is in the legacy form)."""
        state = self._state(item)
        if recorded == _hash([[self.key(path), size, mtime] for path, size, mtime in state]):
            return True, False
        if recorded is not None and recorded == _hash([list(entry) for entry in state]):
            return True, True
        return False, False


def _hash(state: list) -> str:
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:32]


def _local_images(stage: Stage, manifest: Manifest) -> dict[str, str | None]:
    prompt_set = manifest.prompt_sets.get(stage.prompts or "")
    images: dict[str, str | None] = {}
    for prompt in prompt_set.prompts if prompt_set else ():
        if prompt.stem not in images:  # the first prompt of a stem, as the stage reads it
            local = prompt_set.local_image(prompt)
            images[prompt.stem] = None if local is None else str(local)
    return images


# Files a stage writes from all its items at the end (not per item): they must exist and be at
# least as new as every item's output, or the stage runs again to rewrite them (a crash between
# the last item and these files would otherwise leave them missing or stale).
STAGE_FILES = {"judge": ("duels.json", "match.json")}


def stage_files_current(stage: Stage, manifest: Manifest, stat: Stat = stat) -> bool:
    names = STAGE_FILES.get(stage.kind)
    if not names or not stage.output:
        return True
    folder = str(manifest.resolve_path(stage.output))
    try:
        with os.scandir(folder) as entries:
            records = [f"{folder}/{entry.name}" for entry in entries
                       if entry.name.endswith(".json") and entry.name not in names]
    except OSError:
        return False
    times = [stat(f"{folder}/{name}") for name in names]
    if None in times:
        return False
    oldest = min(found[1] for found in times)
    return all(found is not None and found[1] <= oldest for found in map(stat, records))
