"""Secrets: references in manifests, values only at the moment of use.

A `Secret` prints, reprs and serialises as `***`. Its value is read from its source (an
environment variable or a file) only when `reveal()` is called, so `validate` and `plan` work on
machines (CI, reviewers' laptops) that do not hold the secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from runner404.errors import UsageError

MASK = "***"


class SecretUnavailable(UsageError):
    pass


class Secret:
    __slots__ = ("names", "_resolve")

    def __init__(self, names: tuple[str, ...], resolve: Callable[[], str]):
        self.names = names  # what may reach logs, fingerprints and the ledger
        self._resolve = resolve

    @classmethod
    def from_source(cls, name: str, source: Mapping[str, str], base_dir: Path,
                    environ: Mapping[str, str]) -> Secret:
        def resolve() -> str:
            if "env" in source:
                var = source["env"]
                if var not in environ:
                    raise SecretUnavailable(f"secret '{name}': environment variable {var} is not set")
                return environ[var]
            file = (base_dir / Path(source["file"]).expanduser())
            try:
                return file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretUnavailable(f"secret '{name}': cannot read {source['file']}: {exc.strerror}") from None

        return cls((name,), resolve)

    @classmethod
    def join(cls, parts: list[str | Secret]) -> Secret:
        """A string built from text and secrets, e.g. `Bearer ${{ secrets.key }}`."""
        names = tuple(n for p in parts if isinstance(p, Secret) for n in p.names)
        return cls(names, lambda: "".join(p.reveal() if isinstance(p, Secret) else p for p in parts))

    def reveal(self) -> str:
        return self._resolve()

    def __str__(self) -> str:
        return MASK

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __reduce__(self):  # never pickle a value
        raise TypeError("secrets cannot be pickled")


def redact(value):
    """A JSON-ready copy of `value` with every secret replaced by its mask."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def by_name(value):
    """A JSON-ready copy for fingerprints: a secret enters by its names only."""
    if isinstance(value, Secret):
        return {"secret": list(value.names)}
    if isinstance(value, dict):
        return {k: by_name(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [by_name(v) for v in value]
    return value
