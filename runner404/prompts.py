"""Prompt sets: a prompts JSON file, a text file of image URLs, an inline list, or a competition
round (`rounds/<n>/prompts.txt` and `seed.json`, read by runner404.rounds).

One stem rule for every stage (classic-cli D16): the given stem, else the last path segment of
the URL (query and fragment removed) up to its first dot; stripped and lower-cased; it must match
`[a-z0-9]+` and be unique within the set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STEM = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class Prompt:
    stem: str
    image_url: str  # an http(s) URL or a local path


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "data:"))


@dataclass(frozen=True)
class PromptSet:
    id: str
    prompts: tuple[Prompt, ...]
    seed: int | None
    base_dir: Path | None = None  # where relative local image paths start (the file's folder)
    round: int | None = None  # a round prompt set: its round number...
    source: str | None = None  # ...and the competition base it was read from

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.prompts]

    def local_image(self, prompt: Prompt) -> Path | None:
        """The image file of a prompt given as a local path (None for URLs)."""
        if is_remote(prompt.image_url):
            return None
        if prompt.image_url.startswith("file://"):
            return Path(urlsplit(prompt.image_url).path)
        path = Path(prompt.image_url).expanduser()
        return path if path.is_absolute() else (self.base_dir or Path.cwd()) / path

    def image_url(self, prompt: Prompt) -> str:
        """A URL for the prompt image: as given, or `file://` for a local path."""
        local = self.local_image(prompt)
        return prompt.image_url if local is None else local.resolve().as_uri()


class PromptError(Exception):
    """Every problem found in one prompt source, each naming its entry."""

    def __init__(self, problems: list[tuple[int | None, str]]):
        self.problems = problems  # (entry index or None, message)
        super().__init__("; ".join(m for _, m in problems))


def stem_from_url(url: str) -> str:
    parts = urlsplit(url) if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) else None
    path = parts.path if parts else url.split("?")[0].split("#")[0]
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0].strip().lower()


def build_prompts(entries: list[Any], where: str = "prompts", labels: list[str] | None = None) -> list[Prompt]:
    """Turn `{stem?, image_url}` objects or plain URL strings into prompts, checking stems.

    Messages name entries `<where>[i]`, or by `labels[i]` when given (e.g. "line 7").
    """
    problems: list[tuple[int | None, str]] = []
    prompts: list[Prompt] = []
    first_index: dict[str, int] = {}
    names = labels or [f"{where}[{i}]" for i in range(len(entries))]
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image_url": entry}
        if not isinstance(entry, dict):
            problems.append((i, f"{names[i]} must be an object"))
            continue
        url = entry.get("image_url")
        if not isinstance(url, str) or not url.strip():
            problems.append((i, f"{names[i]}.image_url must be a non-empty string"))
            continue
        url = url.strip()
        stem = entry.get("stem")
        if stem is not None and (not isinstance(stem, str) or not stem.strip()):
            problems.append((i, f"{names[i]}.stem must be a non-empty string when provided"))
            continue
        stem = stem.strip().lower() if stem is not None else stem_from_url(url)
        if not STEM.match(stem):
            how = "given" if entry.get("stem") is not None else f"derived from {url!r}"
            problems.append((i, f"{names[i]}: stem {stem!r} ({how}) must be lowercase letters and digits only"))
            continue
        if stem in first_index:
            problems.append((i, f"{names[i]}: duplicate stem {stem!r} (also {names[first_index[stem]]})"))
            continue
        first_index[stem] = i
        prompts.append(Prompt(stem, url))
    if problems:
        raise PromptError(problems)
    return prompts


def read_prompt_file(path: Path, display: str | None = None) -> tuple[list[Prompt], int | None]:
    """Read a prompts JSON file or a text file of URLs; returns the prompts and the file's seed.

    `display` is how messages name the file (as the user wrote it).
    """
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PromptError([(None, f"prompts file {shown} not found")]) from None
    except UnicodeDecodeError as exc:
        raise PromptError([(None, f"prompts file {shown} is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise PromptError([(None, f"cannot read prompts file {shown}: {exc.strerror}")]) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _read_json(text, shown)
    numbered = [(no, line.strip()) for no, line in enumerate(text.splitlines(), 1)]
    numbered = [(no, line) for no, line in numbered if line and not line.startswith("#")]
    if not numbered:
        raise PromptError([(None, f"{shown} lists no image URLs")])
    labels = [f"{shown} line {no}" for no, _ in numbered]
    return build_prompts([line for _, line in numbered], labels=labels), None


def _read_json(text: str, path: str) -> tuple[list[Prompt], int | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError([(None, f"invalid JSON in {path} at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or not data["prompts"]:
        raise PromptError([(None, f"{path}: JSON must contain a non-empty 'prompts' list")])
    problems: list[tuple[int | None, str]] = []
    seed = data.get("seed")
    if seed is not None:
        seed = _int_seed(seed)
        if seed is None:
            problems.append((None, f"{path}: 'seed' in prompts JSON must be an integer"))
    try:
        prompts = build_prompts(data["prompts"], where="prompts")
    except PromptError as exc:
        problems += [(i, f"{path}: {m}") for i, m in exc.problems]
    if problems:
        raise PromptError(problems)
    return prompts, seed


def _int_seed(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None
