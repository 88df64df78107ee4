"""Round prompt sets: `prompts: {<id>: {round: N | current, competition_url?: ...}}`.

A round prompt set reads `rounds/<n>/prompts.txt` (one image URL per line; stems by the shared
stem rule of runner404.prompts) and `rounds/<n>/seed.json` from a competition base: the set's
`competition_url`, else `$RUNNER404_COMPETITION_URL`, else the public repository (the same
setting as the chain stages). A local folder is relative to the manifest.

Files read over http(s) are cached in the state folder, `<manifest dir>/.runner404/cache/`, by URL
and content hash (`urls/<sha256 of url>.json` names `blobs/<sha256 of content>`):
- `rounds/<n>/...` are published once per round, so a cached copy is used without asking the
  network again (a rerun, `validate` and `plan` work offline once the round was read);
- `state.json` (for `round: current`) and `config.json` change over time: they are read from the
  network first, and the cached copy is used, with a warning, only when the network fails.
When neither the network nor the cache has a file, the error names the URL and the cache folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runner404.chain.competition import Competition, CompetitionError, _describe, competition_base
from runner404.engine import atomic

CACHE_DIR = Path(".runner404") / "cache"


def cache_dir(manifest_dir: Path) -> Path:
    return manifest_dir / CACHE_DIR


class UrlCache:
    """Files by URL and content hash; every write is atomic, a corrupt blob is a miss."""

    def __init__(self, root: Path):
        self.root = root

    def _entry(self, url: str) -> Path:
        return self.root / "urls" / f"{hashlib.sha256(url.encode()).hexdigest()}.json"

    def get(self, url: str) -> tuple[bytes, str] | None:
        """The cached bytes and when they were fetched (ISO time), or None."""
        try:
            entry = json.loads(self._entry(url).read_text(encoding="utf-8"))
            data = (self.root / "blobs" / entry["sha256"]).read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if entry.get("url") != url or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return None
        return data, str(entry.get("fetched_at", "?"))

    def put(self, url: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        try:
            blob = self.root / "blobs" / digest
            if not blob.is_file():
                atomic.write_bytes(blob, data)
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
            atomic.write_text(self._entry(url), json.dumps({"url": url, "sha256": digest, "size": len(data),
                                                            "fetched_at": now}, indent=1) + "\n")
        except OSError:
            pass  # a read-only state folder: the file was read, only the cache is lost


def pinned(relpath: str) -> bool:
    """Per-round files never change once published."""
    return relpath.startswith("rounds/")


class CachedCompetition(Competition):
    """A `Competition` whose http(s) reads go through a `UrlCache` (see the module docstring).

    `stale` collects a line for each file served from the cache because the network failed.
    """

    def __init__(self, base: str | Path | None, cache: UrlCache | None, **kwargs: Any):
        super().__init__(base, **kwargs)
        self.cache = cache if self._kind == "http" else None
        self.stale: list[str] = []
        self._offline = False  # the last failed read found neither the network nor a cached copy

    def _read(self, relpath: str) -> bytes:
        if self.cache is None:
            return super()._read(relpath)
        url = self.url(relpath)
        if pinned(relpath) and (hit := self.cache.get(url)) is not None:
            return hit[0]
        try:
            data = super()._read(relpath)
        except Exception as exc:
            hit = self.cache.get(url)
            if hit is None:
                self._offline = not isinstance(exc, httpx.HTTPStatusError)  # the server answered: no hint
                raise
            self.stale.append(f"{url} could not be read ({_describe(exc, self.timeout)}); using the copy "
                              f"cached at {hit[1]}")
            return hit[0]
        self.cache.put(url, data)
        return data

    def fetch(self, relpath: str) -> bytes:
        try:
            return super().fetch(relpath)
        except CompetitionError as exc:
            if self.cache is None or not self._offline:
                raise
            raise CompetitionError(f"{exc}; no cached copy in {self.cache.root} either (read the round once "
                                   "with network access, or set competition_url to a local copy)") from None


def resolve_base(setting: str | None, environ: Mapping[str, str], manifest_dir: Path) -> str:
    """`setting`, else `$RUNNER404_COMPETITION_URL`, else the public repository; a folder is made
    absolute relative to the manifest."""
    base = competition_base(setting, environ)
    if "://" in base:
        return base
    return str((manifest_dir / Path(base).expanduser()).resolve())


def open_competition(setting: str | None, environ: Mapping[str, str], manifest_dir: Path) -> CachedCompetition:
    return CachedCompetition(resolve_base(setting, environ, manifest_dir), UrlCache(cache_dir(manifest_dir)))


@dataclass(frozen=True)
class RoundPrompts:
    round: int
    base: str  # where the files were read from
    urls: list[tuple[int, str]]  # (line number in prompts.txt, image URL)
    seed: int
    relpath: str  # rounds/<n>/prompts.txt, for messages
    stale: tuple[str, ...] = ()


def current_round(competition: Competition) -> int:
    return competition.state().current_round


def read_round(competition: CachedCompetition, number: int) -> RoundPrompts:
    """The image URLs (with their line numbers) and the seed of round `number`."""
    relpath = competition.prompts_path(number)
    urls = competition.prompt_lines(number)
    if not urls:
        raise CompetitionError(f"Failed to parse prompts.txt: {competition.url(relpath)} lists no image URLs")
    seed = competition.seed(number)
    return RoundPrompts(number, competition.base, urls, seed, relpath, tuple(competition.stale))
