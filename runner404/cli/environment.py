"""The I/O environment a command runs in, passed in so tests need no monkeypatching."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def _isatty(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Environment:
    stdin: IO = field(default_factory=lambda: sys.stdin)
    stdout: IO = field(default_factory=lambda: sys.stdout)
    stderr: IO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    argv: list[str] = field(default_factory=list)  # the arguments as given, for "resume with" hints

    def __post_init__(self) -> None:
        for name in ("stdin", "stdout", "stderr"):
            if getattr(self, f"{name}_isatty") is None:
                setattr(self, f"{name}_isatty", _isatty(getattr(self, name)))

    @property
    def config_dir(self) -> Path:
        base = self.environ.get("XDG_CONFIG_HOME") or str(Path(self.environ.get("HOME", "~")) / ".config")
        return Path(base).expanduser() / "runner404"

    @property
    def color(self) -> bool:
        return bool(self.stdout_isatty) and "NO_COLOR" not in self.environ

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def err(self, text: str = "") -> None:
        print(text, file=self.stderr)

    def path(self, value: str | Path) -> Path:
        """A user-given path, relative to this environment's working directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.cwd / path
