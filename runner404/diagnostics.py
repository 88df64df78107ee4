"""Positions in source files and the diagnostics that point at them."""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from typing import Iterable


@dataclass(frozen=True)
class Mark:
    """A 1-based position in a source; `end_col` (exclusive) underlines a token on one line."""

    file: str
    line: int
    col: int
    end_col: int | None = None
    snippet: str | None = None  # the source line, for display

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # or "warning"
    snippet: str | None = None
    end_col: int | None = None

    @classmethod
    def at(cls, mark: Mark, message: str, severity: str = "error") -> Diagnostic:
        return cls(mark.file, mark.line, mark.col, message, severity, mark.snippet, mark.end_col)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("snippet")
        data.pop("end_col")
        return data


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.7)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def sort_key(d: Diagnostic) -> tuple:
    return (d.file, d.line, d.col, d.message)


def format_text(diagnostics: list[Diagnostic]) -> str:
    """`file:line:col: error: message` lines, each with the source line and a caret under it."""
    out: list[str] = []
    for d in sorted(diagnostics, key=sort_key):
        out.append(f"{d.file}:{d.line}:{d.col}: {d.severity}: {d.message}")
        if d.snippet is not None:
            text = d.snippet.rstrip("\n").expandtabs(1)
            gutter = str(d.line)
            width = max(1, (d.end_col or d.col + 1) - d.col)
            out.append(f"  {gutter} | {text}")
            out.append(f"  {' ' * len(gutter)} | {' ' * (d.col - 1)}^{'~' * (width - 1)}")
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = [f"{errors} error{'s' * (errors != 1)}"] if errors or not warnings else []
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    out.append(", ".join(parts))
    return "\n".join(out)


def format_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps(
        {"diagnostics": [d.to_json() for d in sorted(diagnostics, key=sort_key)]}, indent=2
    )
