"""Exception hierarchy and the exit codes it maps to (documented in README.md)."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner404.diagnostics import Diagnostic


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the evaluation or command failed
    USAGE = 2  # bad arguments or an invalid manifest
    INFRA = 3  # provider or infrastructure failure
    PARTIAL = 4  # some items failed
    INTERRUPTED = 130  # Ctrl-C


class Runner404Error(Exception):
    """A failure the user can act on: printed as a message, never as a traceback."""

    exit_code = ExitCode.FAILED


class UsageError(Runner404Error):
    exit_code = ExitCode.USAGE


class ManifestError(Runner404Error):
    """A manifest (or an override) is invalid; carries every diagnostic found."""

    exit_code = ExitCode.USAGE

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__(f"{len(diagnostics)} error(s)")


class InfraError(Runner404Error):
    exit_code = ExitCode.INFRA
