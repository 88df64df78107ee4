"""Command-line overrides: `--set path=value` (value parsed as YAML) and `--vars-file FILE`."""

from __future__ import annotations

from pathlib import Path

import yaml

from runner404.diagnostics import Diagnostic, Mark
from runner404.errors import ManifestError, UsageError
from runner404.manifest.load import Document, read_manifest


def apply_set(doc: Document, assignment: str) -> None:
    """Set `a.b.c=value` in the document, creating mappings on the way."""
    path_text, sep, value_text = assignment.partition("=")
    keys = path_text.strip().split(".")
    if not sep or not all(keys):
        raise UsageError(f"--set {assignment!r}: expected PATH=VALUE, e.g. --set vars.seed=7")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError as exc:
        raise UsageError(f"--set {assignment!r}: the value is not valid YAML ({exc})") from None
    mark = Mark("--set", 1, len(path_text) + 2, len(assignment) + 1, assignment)
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
    doc.key_marks[path] = Mark("--set", 1, 1, len(path_text) + 1, assignment)


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
