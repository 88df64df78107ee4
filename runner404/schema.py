"""The manifest JSON Schema: the single source of truth, shipped inside the package."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_NAME = "manifest.schema.json"


def schema_path(name: str = _NAME) -> Path:
    """The packaged copy (wheel) or the repository's `schemas/` folder (source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "schemas" / name, here.parent / "schemas" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is missing from the runner404 installation")


def schema_text(name: str = _NAME) -> str:
    return schema_path(name).read_text(encoding="utf-8")


@cache
def manifest_schema() -> dict:
    return json.loads(schema_text())
