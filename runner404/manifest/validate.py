"""JSON Schema validation of the resolved tree, explained at the user's file:line:col.

jsonschema reports errors against the instance path; this module turns each into a
diagnostic at the position of the offending key or value, with a did-you-mean for misspelled
keys and enum values. `anyOf` alternatives are narrowed to the one the value was meant to be
(by type), so a typo inside `rules: {...}` is reported as such rather than as "not valid under
any of the given schemas".
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runner404.diagnostics import Diagnostic, did_you_mean
from runner404.manifest.load import Document, JsonPath
from runner404.manifest.model import is_secret_field
from runner404.schema import manifest_schema
from runner404.secret import MASK, redact

_NAME_HELP = "must start with a letter and contain only letters, digits, '-' and '_'"
PATTERN_HELP = {
    "^[A-Za-z][A-Za-z0-9_-]{0,62}$": _NAME_HELP + " (at most 63 characters)",
    "^[A-Za-z_][A-Za-z0-9_]*$": "must contain only letters, digits and '_', not starting with a digit",
    "^[a-z0-9][a-z0-9-]{0,39}$": "must be lowercase letters, digits and '-' (at most 40 characters)",
    "^[a-z0-9][a-z0-9_-]{0,62}$": "must be lowercase letters, digits, '-' and '_'",
    "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$": "is not a duration such as 500ms, 90s, 15m or 4h",
    "^[0-9a-fA-F]{40}$": "must be a full 40-character hex commit SHA",
    "^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$": "must be 'owner/name'",
    "^https?://[^/\\s]+": "must be an http:// or https:// URL",
    "^https?://": "must be an http:// or https:// URL",
    "^(/|https?://)": "must be a path starting with '/' or an http(s) URL",
    "^[a-z0-9]+$": "must be lowercase letters and digits only",
    "^[a-z0-9_]+$": "must be lowercase letters, digits and '_'",
}
_JSON_TYPE = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
              float: "number", type(None): "null"}


def _validator() -> Draft202012Validator:
    return Draft202012Validator(manifest_schema())


def schema_errors(data: Any, skip: set[JsonPath] = frozenset()) -> list[ValidationError]:
    """Schema errors, except those about values whose expressions already failed."""
    return [e for e in _validator().iter_errors(redact(data)) if tuple(e.absolute_path) not in skip]


def schema_diagnostics(errors: list[ValidationError], doc: Document) -> list[Diagnostic]:
    found: dict[tuple, Diagnostic] = {}
    for error in errors:
        for diag in _explain(error, doc):
            found.setdefault((diag.file, diag.line, diag.col, diag.message), diag)
    return list(found.values())


def where(path: JsonPath) -> str:
    if not path:
        return "manifest"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any, hide: bool = False) -> str:
    if hide:  # a credential given where a secret belongs: say what is wrong, never what it is
        return MASK
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _explain(error: ValidationError, doc: Document) -> Iterator[Diagnostic]:
    path = tuple(error.absolute_path)
    at = where(path)
    kind, value, instance = error.validator, error.validator_value, error.instance
    hide = is_secret_field(path)

    if kind in ("anyOf", "oneOf"):
        branch = _intended_branch(error)
        if branch is not None:
            for sub in branch:
                yield from _explain(sub, doc)
            return
        expected = " or ".join(_branch_summary(s) for s in value)
        yield Diagnostic.at(doc.mark(path),
                            f"{at}: expected {expected}, got {_type_name(instance)} {_show(instance, hide)}")
        return
    if "propertyNames" in error.schema_path:
        yield Diagnostic.at(doc.key_mark(path + (instance,)),
                            f"{at}: invalid name {instance!r}: {PATTERN_HELP.get(value, f'must match {value}')}")
        return
    if kind == "additionalProperties" and value is False:
        allowed = list(error.schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
                yield Diagnostic.at(doc.key_mark(path + (key,)), f"{at}: unknown key '{key}'{hint}")
        return
    if kind == "required":
        for key in value:
            if isinstance(instance, dict) and key not in instance:
                yield Diagnostic.at(doc.key_mark(path), f"{at}: missing required key '{key}'")
        return
    yield Diagnostic.at(doc.mark(path), f"{at}: {_message(error, hide)}")


def _message(error: ValidationError, hide: bool = False) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "enum":
        choices = ", ".join(str(v) for v in value)
        hint = did_you_mean(instance, value) if isinstance(instance, str) and not hide else ""
        return f"{_show(instance, hide)} is not one of: {choices}{hint}"
    if kind == "const":
        return f"must be {_show(value)}, got {_show(instance, hide)}"
    if kind == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        return f"expected {expected}, got {_type_name(instance)} {_show(instance, hide)}"
    if kind == "pattern":
        return f"{_show(instance, hide)} {PATTERN_HELP.get(value, f'does not match {value}')}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {"minimum": "at least", "exclusiveMinimum": "greater than",
                 "maximum": "at most", "exclusiveMaximum": "less than"}[kind]
        return f"must be {words} {value}, got {_show(instance, hide)}"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minItems":
        return f"needs at least {value} item{'s' * (value != 1)}"
    if kind == "minProperties":
        return f"needs at least {value} entr{'ies' if value != 1 else 'y'}"
    if kind == "maxProperties" and value == 1:
        choices = " or ".join(f"{k}:" for k in error.schema.get("properties", {}))
        return f"give only one of {choices}, got {', '.join(instance)}"
    if kind == "uniqueItems":
        return "has duplicate items"
    if kind == "dependentRequired":
        return error.message
    return f"is not valid ({kind})" if hide else error.message  # jsonschema's message quotes the value


def _intended_branch(error: ValidationError) -> list[ValidationError] | None:
    """The errors of the alternative the value was meant to match, judged by its type."""
    branches: dict[int, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        branches[sub.relative_schema_path[0]].append(sub)
    fitting = []
    for index, schema in enumerate(error.validator_value):
        subs = branches.get(index, [])
        if any(s.validator == "type" and not s.relative_path for s in subs):
            continue
        if "type" not in schema and "$ref" not in schema and "const" not in schema:
            continue
        fitting.append(subs)
    return fitting[0] if len(fitting) == 1 and fitting[0] else None


def _branch_summary(schema: dict) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "value")
    return {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number"}.get(kind, str(kind))
