"""Argument and input checks of the classic commands, with the classic messages (classic-cli §3).

Each check raises `ClassicError`, which the runner prints as `{"success": false, "error": ...}`
with exit 1. They run before the one-step manifest is built (arguments) or before it is run
(files), so the user sees the classic wording instead of a manifest diagnostic; the manifest is
still validated by the schema afterwards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from runner404.errors import Runner404Error

STEM = re.compile(r"^[a-z0-9]+$")
SEED = re.compile(r"^\s*\+?[0-9]+\s*$")
MAX_SEED = 2 ** 63 - 1


class ClassicError(Runner404Error):
    """A handled failure of a classic command: error JSON on stdout, exit 1."""


def parse_seed(value: str | None, option: str = "--seed") -> int | None:
    """`--seed` as the classic `int()` reads a decimal string; anything else is a clear error (D15)."""
    if value is None:
        return None
    if not SEED.match(value) or int(value) > MAX_SEED:
        raise ClassicError(f"Invalid {option} value {value!r}: expected a non-negative integer")
    return int(value)


def endpoint_url(value: str, option: str = "--endpoint") -> str:
    """An http(s) base URL, whitespace and trailing '/' removed (classic clients do the same)."""
    url = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ClassicError(f"Invalid {option} URL: {value!r}. Expected http:// or https://")
    return url


def judge_endpoint(value: str) -> str:
    """The judge's vLLM base: the classic client appends /v1 itself, so a given /v1 is dropped
    (the pod's health check is `<base>/health`)."""
    url = endpoint_url(value)
    return url[:-3].rstrip("/") if url.endswith("/v1") else url


def commit_hash(value: str) -> str:
    from runner404.chain import codec

    try:
        return codec.validate_commit_hash(value)
    except Runner404Error as exc:
        raise ClassicError(str(exc)) from None


def repo_and_cdn(repo: str, cdn_url: str) -> tuple[str, str]:
    from runner404.chain import codec

    try:
        return codec.validate_repo(repo), codec.validate_cdn_url(cdn_url)
    except Runner404Error as exc:
        raise ClassicError(str(exc)) from None


def _json_seed_ok(value: Any) -> bool:
    """runner404's rule for a seed in a prompts file: a non-negative integer or digit string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value) is not None


def check_prompts(path: Path, shown: str, *, seed_given: bool, judge: bool = False) -> int:
    """Validate a prompts JSON file with the classic messages (§3.7; the judge's own wording
    where it differs, §3.9); returns the number of prompts.

    Stems follow the one shared rule (D16): the given stem, else the last URL path segment up
    to its first dot; stripped, lower-cased, `[a-z0-9]+`, unique (D24).
    """
    from runner404.prompts import stem_from_url

    if not path.is_file():
        raise ClassicError(f"Prompts JSON file {shown} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassicError(f"Error reading prompts JSON file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClassicError(f"Invalid JSON in {shown}: {exc}") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list) or not prompts:  # a non-object root too (D15)
        raise ClassicError("prompts JSON must contain a non-empty 'prompts' list" if judge
                           else "JSON must contain non-empty 'prompts' list")
    stems: set[str] = set()
    for i, item in enumerate(prompts):
        if not isinstance(item, dict):
            raise ClassicError(f"prompts[{i}] must be an object")
        url = item.get("image_url")
        if not isinstance(url, str) or not url.strip():
            raise ClassicError(f"prompts[{i}].image_url must be a non-empty string")
        stem = item.get("stem")
        if stem is not None and (not isinstance(stem, str) or not stem.strip()):
            raise ClassicError(f"prompts[{i}].stem must be a non-empty string when provided")
        stem = stem.strip().lower() if stem is not None else stem_from_url(url.strip())
        if not STEM.match(stem):
            raise ClassicError(f"Invalid stem '{stem}'. Batch API requires lowercase alphanumeric stems.")
        if stem in stems:
            raise ClassicError("Prompt stems must be unique within a batch")
        stems.add(stem)
    seed = data.get("seed")
    if seed is not None and not _json_seed_ok(seed):
        raise ClassicError("'seed' in prompts JSON must be an integer")
    if seed is None and not seed_given and not judge:
        raise ClassicError("Provide --seed or include numeric 'seed' in prompts JSON")
    return len(prompts)
