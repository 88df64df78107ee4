"""Command-line overrides: `--set path=value` (value parsed as YAML) and `--vars-file FILE`.

A `--set` that gives a secret (an api_key, a pod's env value: model.SECRET_FIELDS) is never
repeated as typed: diagnostics, the ledger and the "resume with" hint show its value as ***.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from runner404.diagnostics import Diagnostic, Mark
from runner404.errors import ManifestError, UsageError
from runner404.manifest.load import Document, read_manifest
from runner404.manifest.model import encloses_secret_field, is_secret_field
from runner404.secret import MASK


def gives_secret(assignment: str) -> bool:
    """Whether `--set PATH=VALUE` gives a secret: PATH is a secret field (or inside one), or VALUE
    is a mapping holding one (`--set 'provider={type: targon, api_key: ...}'`)."""
    path_text, sep, value_text = assignment.partition("=")
    keys = path_text.strip().split(".")
    if not sep:
        return False
    if is_secret_field(keys):
        return True
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        return encloses_secret_field(keys)  # what it would hold cannot be told

    def holds(path: list[str], value: object) -> bool:
        return is_secret_field(path) or isinstance(value, dict) and any(
            holds(path + [str(k)], v) for k, v in value.items())

    return holds(keys, value)


def shown_assignment(assignment: str) -> str:
    """`PATH=VALUE` as it may be printed or stored: `PATH=***` when it gives a secret."""
    return assignment.partition("=")[0] + "=" + MASK if gives_secret(assignment) else assignment


def _shown_malformed(text: str) -> str:
    """A `--set` without `=` as it may be quoted: `provider.api_key:KEY` (a typo for `=`) still
    gives a secret, so whatever follows a secret field's path is masked."""
    path = re.match(r"[\w.*-]*", text).group()  # type: ignore[union-attr]
    rest = text[len(path):]
    return path + rest[:1] + MASK if rest and is_secret_field(path.split(".")) else text


def shown_argv(argv: list[str]) -> list[str]:
    """Command-line arguments as they may be printed or stored: the values of `--set`s that give
    secrets masked (both `--set PATH=VALUE` and `--set=PATH=VALUE`)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--set":
            out.append(shown_assignment(arg))
        elif arg.startswith("--set="):
            out.append("--set=" + shown_assignment(arg[len("--set="):]))
        else:
            out.append(arg)
    return out


def apply_set(doc: Document, assignment: str) -> None:
    """Set `a.b.c=value` in the document, creating mappings on the way."""
    path_text, sep, value_text = assignment.partition("=")
    keys = path_text.strip().split(".")
    if not sep or not all(keys):
        raise UsageError(f"--set {_shown_malformed(assignment)!r}: expected PATH=VALUE, e.g. --set vars.seed=7")
    shown = shown_assignment(assignment)  # what diagnostics quote
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as exc:
        detail = "" if shown != assignment else f" ({exc})"  # the parser's message quotes the value
        raise UsageError(f"--set {shown!r}: the value is not valid YAML{detail}") from None
    mark = Mark("--set", 1, len(path_text) + 2, len(shown) + 1, shown)
    node = doc.data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
            doc.marks[tuple(keys[:depth + 1])] = mark
        if not isinstance(child, dict):
            raise ManifestError([Diagnostic.at(mark, f"cannot set '{'.'.join(keys)}': "
                                                     f"'{'.'.join(keys[:depth + 1])}' is not a mapping")])
        node = child
    node[keys[-1]] = value
    path = tuple(keys)
    for old in [p for p in doc.marks if p[:len(path)] == path]:
        del doc.marks[old]
    doc.marks[path] = mark
    doc.key_marks[path] = Mark("--set", 1, 1, len(path_text) + 1, shown)


def apply_vars_file(doc: Document, file: Path) -> None:
    """Merge a YAML mapping into `vars`; its values keep their own file positions."""
    extra = read_manifest(file)
    if not isinstance(extra.data, dict):
        raise ManifestError([Diagnostic.at(extra.mark(()), "a vars file must be a mapping of names to values")])
    current = doc.data.get("vars")
    if current is None:
        current = doc.data["vars"] = {}
        doc.marks[("vars",)] = extra.mark(())
    if not isinstance(current, dict):
        raise ManifestError([Diagnostic.at(doc.mark(("vars",)), "vars must be a mapping to merge --vars-file into")])
    current.update(extra.data)
    for path, mark in extra.marks.items():
        if path:
            doc.marks[("vars",) + path] = mark
    for path, mark in extra.key_marks.items():
        doc.key_marks[("vars",) + path] = mark
